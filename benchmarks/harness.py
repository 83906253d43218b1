"""Timing core: interleaved blocks, medians and spread, compile guards, peak memory.

A case is one piece of work (say, the MLP forward at batch 1024) done by several
variants (torch eager, torch.compile, jax.jit, ...). Each variant is built and
warmed up first, its first call timed apart as the compile time. Then the harness
runs ``rounds`` rounds; in each round every variant runs one block of calls, in a
fresh random order, with a short pause whenever the framework changes (torch's
worker threads keep spinning for about 10 ms after an op and slow the next
framework down). A variant's time is the median over rounds of its per-call
time, so ratios between variants come from the same minutes of machine time.

After warm-up nothing may compile again: the harness counts JAX compilations
(``jax.monitoring`` events) and torch.compile graphs and graph breaks
(``torch._dynamo`` counters) around every block and raises ``RecompileError``
naming the variant when a count moves.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

# Seconds to wait after a block before a block of another framework starts.
FRAMEWORK_GAP_S = 0.02

_JAX_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_JAX_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


class RecompileError(RuntimeError):
    """A variant compiled (or retraced, or broke its graph) after warm-up."""


@dataclass
class Timing:
    """Per-call seconds of one variant over the rounds of one case."""

    median_s: float
    p25_s: float
    p75_s: float
    min_s: float
    rounds: int
    calls_per_block: int


@dataclass
class Variant:
    """One way to do a case's work.

    ``run(n)`` performs ``n`` calls and synchronizes the device before it
    returns (``block_until_ready`` / ``torch.cuda.synchronize``). It returns
    None, or the elapsed seconds when the work is timed elsewhere (the NetKet
    peer times itself in its own process).

    Attributes:
        name: label in tables and plots, e.g. ``"jax jit"``.
        framework: ``"torch"``, ``"jax"`` or ``"netket"``; a pause separates
            blocks of different frameworks.
        run: see above.
        items_per_call: work items one call does (samples, for throughput).
        compile_s: seconds of the first call (tracing, compilation and one run),
            or None for an eager variant.
        steps_per_call: steps of the case's work one call does (a scanned loop
            does many); the per-step time ``unit_s`` is what ratios compare.
        note: anything a reader must know about this variant's numbers.
        close: called once after the case to release what ``run`` uses (the
            NetKet peer's process).
    """

    name: str
    framework: str
    run: Callable[[int], float | None]
    items_per_call: int = 1
    compile_s: float | None = None
    steps_per_call: int = 1
    note: str = ""
    close: Callable[[], None] | None = None
    peak_rss_mb: float | None = None
    rss_delta_mb: float | None = None


@dataclass
class Skipped:
    """A variant that could not be built here, and why."""

    name: str
    reason: str


@dataclass
class CaseResult:
    """Everything measured for one case."""

    suite: str
    case: str
    params: dict
    work: dict
    loadavg_before: list[float]
    loadavg_after: list[float]
    results: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class CompileCounter:
    """Counts JAX compilations and traces and torch.compile graphs and graph breaks.

    JAX reports every trace and backend compilation through ``jax.monitoring``;
    one listener is registered per process. torch's counts are read from
    ``torch._dynamo.utils.counters`` only when torch.compile was imported.
    """

    _jax_counts = {"jax_compiles": 0, "jax_traces": 0}
    _listening = False

    @classmethod
    def _listen(cls) -> None:
        if cls._listening:
            return
        import jax.monitoring

        def on_duration(event: str, duration: float, **kwargs) -> None:
            if event == _JAX_COMPILE_EVENT:
                cls._jax_counts["jax_compiles"] += 1
            elif event == _JAX_TRACE_EVENT:
                cls._jax_counts["jax_traces"] += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        cls._listening = True

    def __init__(self):
        self._listen()

    def snapshot(self) -> dict[str, int]:
        """Return the current counts."""
        counts = dict(self._jax_counts)
        import sys
        if "torch._dynamo" in sys.modules:
            from torch._dynamo.utils import counters
            counts["torch_graphs"] = int(counters["stats"].get("unique_graphs", 0))
            counts["torch_graph_breaks"] = int(sum(counters["graph_break"].values()))
            counts["torch_recompiles"] = int(sum(counters["recompiles"].values()))
        return counts


def _changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}


def loadavg() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def reset_peak_rss() -> bool:
    """Reset the process's peak resident set (Linux ``clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Return the current resident set size in MiB (None off Linux)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    """Return the peak resident set size since the last reset, in MiB."""
    return _status_mb("VmHWM")


def build_variant(builder: Callable[[], Variant]) -> Variant:
    """Build a variant, recording the memory its build and warm-up took.

    ``peak_rss_mb`` is the process's peak resident memory during the build
    (both frameworks' libraries included); ``rss_delta_mb`` is that peak minus
    the resident memory just before, i.e. what this variant's buffers, compiled
    code and warm-up calls added at their highest.
    """
    gc.collect()
    before = rss_mb()
    can_reset = reset_peak_rss()
    variant = builder()
    if variant.peak_rss_mb is not None:
        return variant  # measured by the variant itself (a peer in its own process)
    if can_reset and before is not None:
        variant.peak_rss_mb = round(peak_rss_mb(), 1)
        variant.rss_delta_mb = round(variant.peak_rss_mb - before, 1)
    return variant


def timed_first_call(run: Callable[[int], float | None]) -> float:
    """Run one call and return its wall time (compile time for a compiled variant)."""
    start = time.perf_counter()
    run(1)
    return time.perf_counter() - start


def _calibrate(variant: Variant, block_s: float, max_calls: int) -> int:
    """Return the number of calls that makes one block last about ``block_s``."""
    calls = 1
    while True:
        start = time.perf_counter()
        reported = variant.run(calls)
        elapsed = reported if reported is not None else time.perf_counter() - start
        if elapsed >= block_s / 4 or calls >= max_calls:
            break
        calls *= 4
    per_call = max(elapsed / calls, 1e-9)
    return int(min(max_calls, max(1, round(block_s / per_call))))


def measure(variants: list[Variant], rounds: int, block_s: float, *, seed: int = 0,
            max_calls: int = 100_000, counter: CompileCounter | None = None) -> dict[str, Timing]:
    """Time already-warm ``variants`` in interleaved blocks; return ``{name: Timing}``.

    Raises ``RecompileError`` when any variant compiles, retraces or breaks its
    graph during calibration or timing.
    """
    counter = counter or CompileCounter()
    rng = np.random.default_rng(seed)

    def checked(variant: Variant, calls: int) -> float:
        before = counter.snapshot()
        start = time.perf_counter()
        reported = variant.run(calls)
        elapsed = reported if reported is not None else time.perf_counter() - start
        moved = _changed(before, counter.snapshot())
        if moved:
            raise RecompileError(
                f"variant {variant.name!r} recompiled after warm-up ({moved}); a timed call "
                "must reuse the compiled code, so keep shapes, dtypes and static arguments "
                "fixed and warm up every shape before timing")
        return elapsed

    calls = {}
    for variant in variants:
        calls[variant.name] = _calibrate(variant, block_s, max_calls)
        checked(variant, 1)

    samples: dict[str, list[float]] = {variant.name: [] for variant in variants}
    previous_framework = None
    for _ in range(rounds):
        for index in rng.permutation(len(variants)):
            variant = variants[index]
            if previous_framework is not None and variant.framework != previous_framework:
                time.sleep(FRAMEWORK_GAP_S)
            n = calls[variant.name]
            samples[variant.name].append(checked(variant, n) / n)
            previous_framework = variant.framework

    timings = {}
    for name, values in samples.items():
        q25, q75 = np.percentile(values, [25, 75])
        timings[name] = Timing(median_s=statistics.median(values), p25_s=float(q25),
                               p75_s=float(q75), min_s=min(values), rounds=len(values),
                               calls_per_block=calls[name])
    return timings


def run_case(suite: str, case: str, params: dict, builders: list[tuple[str, Callable[[], Variant]]],
             *, rounds: int, block_s: float, work: dict | None = None, reference: str | None = None,
             seed: int = 0, peaks_by_framework: dict | None = None,
             log: Callable[[str], None] = print) -> CaseResult:
    """Build, warm up and time every variant of one case.

    Args:
        builders: ``(name, builder)`` pairs. A builder returns a warm ``Variant``,
            or raises ``SkipVariant`` with the reason it cannot run here.
        work: ``{"flops": ..., "bytes": ...}`` per call, when the case has a
            meaningful count; each result then gets its achieved GFLOP/s and
            GB/s and their fractions of its framework's peaks.
        reference: the variant every ratio is taken against (default: the first
            that ran).
        peaks_by_framework: ``{framework: {"matmul_gflops": ..., "copy_gbps": ...}}``
            for the case's dtype, from the peak measurements.
    """
    result = CaseResult(suite=suite, case=case, params=params, work=work or {},
                        loadavg_before=loadavg(), loadavg_after=[])
    variants = []
    try:
        for name, builder in builders:
            try:
                variants.append(build_variant(builder))
            except SkipVariant as skip:
                result.skipped.append(asdict(Skipped(name, str(skip))))
                log(f"  skip {case} [{name}]: {skip}")
        timings = measure(variants, rounds, block_s, seed=seed) if variants else {}
    finally:
        for variant in variants:
            if variant.close is not None:
                variant.close()
    if variants:
        ref_name = reference if reference in timings else variants[0].name
        units = {v.name: timings[v.name].median_s / v.steps_per_call for v in variants}
        for variant in variants:
            timing = timings[variant.name]
            unit_s = units[variant.name]
            row = {"variant": variant.name, "framework": variant.framework, **asdict(timing),
                   "steps_per_call": variant.steps_per_call, "unit_s": unit_s,
                   "compile_s": variant.compile_s, "items_per_call": variant.items_per_call,
                   "items_per_s": variant.items_per_call / unit_s,
                   "ratio_to_reference": unit_s / units[ref_name], "reference": ref_name,
                   "peak_rss_mb": variant.peak_rss_mb, "rss_delta_mb": variant.rss_delta_mb,
                   "note": variant.note}
            peaks = (peaks_by_framework or {}).get(variant.framework)
            row.update(_throughput(work, unit_s, peaks))
            result.results.append(row)
    result.loadavg_after = loadavg()
    return result


def _throughput(work: dict | None, seconds: float, peaks: dict | None) -> dict:
    if not work:
        return {}
    out = {}
    if work.get("flops"):
        out["gflops"] = work["flops"] / seconds / 1e9
        if peaks and peaks.get("matmul_gflops"):
            out["flops_fraction"] = out["gflops"] / peaks["matmul_gflops"]
    if work.get("bytes"):
        out["gbps"] = work["bytes"] / seconds / 1e9
        if peaks and peaks.get("copy_gbps"):
            out["bandwidth_fraction"] = out["gbps"] / peaks["copy_gbps"]
    return out


class SkipVariant(Exception):
    """Raised by a variant builder that cannot run here; the message gives the reason."""
