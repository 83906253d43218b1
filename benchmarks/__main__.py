"""``python -m benchmarks``: time both twins on the same work and write the results.

Writes ``<out>/<device>.json`` (every measurement with its metadata),
``<out>/<device>.md`` (the same as tables) and ``<out>/<device>_*.png`` (time
against batch size and against N). ``--quick`` uses small sizes and few repeats
for a smoke check and writes under ``benchmarks/results/quick/`` unless
``--out`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

# JAX's CPU Cholesky runs in scipy's OpenBLAS, whose idle threads spin and slow
# the XLA matmul that follows (Flax twin VMC iteration, N = 20: 25 ms, 15 ms with
# one thread). Set before numpy loads OpenBLAS; the NetKet peer inherits it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import twins  # noqa: E402, F401  (turns on jax_enable_x64 before any JAX array exists)

# Inductor's lowering of torch.trace in the compiled torch statistics calls a
# helper that torch 2.13 deprecates, so the message would repeat in every log.
warnings.filterwarnings("ignore", message="`torch._prims_common.check` is deprecated",
                        category=FutureWarning)

SUITES = ("peaks", "examples", "nqs", "netket")
# A large-batch time within this factor of the batch-1 time means per-call
# overhead, not arithmetic or memory traffic, sets the cost.
OVERHEAD_FACTOR = 3.0
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark the torch and Flax twins on the same work, interleaved.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats, for a smoke check")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where both frameworks run (default: cpu)")
    parser.add_argument("--suite", action="append", choices=SUITES,
                        help="run only this suite (repeatable); default: all")
    parser.add_argument("--example", action="append",
                        help="run only this registered example (repeatable); default: all")
    parser.add_argument("--out", metavar="DIR",
                        help="results folder (default: benchmarks/results, or "
                             "benchmarks/results/quick with --quick)")
    parser.add_argument("--rounds", type=int,
                        help="interleaved rounds per case (default: 5 with --quick, else 15)")
    parser.add_argument("--block-seconds", type=float,
                        help="target seconds per timed block (default: 0.02 with --quick, else 0.05)")
    parser.add_argument("--no-torch-compile", action="store_true",
                        help="skip the torch.compile variants (their compile takes seconds each)")
    parser.add_argument("--netket-python", metavar="PATH",
                        help="Python interpreter that has NetKet installed "
                             "(default: .venv-netket/bin/python in the repository, if present)")
    parser.add_argument("--torch-threads", type=int, metavar="N",
                        help="torch.set_num_threads(N) before timing (default: torch's own "
                             "choice, one per core). On a machine shared with other work, "
                             "torch's threads wait for each other at every op and small ops "
                             "can run 20 times slower; XLA:CPU keeps its own thread pool")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def _log(message: str) -> None:
    print(message, flush=True)


def classify_bounds(cases: list[dict]) -> list[dict]:
    """Say what limits each example's largest-batch case, from its measurements.

    A variant whose time per step at the largest batch is within
    ``OVERHEAD_FACTOR`` of its time at the smallest batch is bound by per-call
    overhead. Otherwise it is compute-bound at >= 50% of its framework's matmul
    peak, bandwidth-bound at >= 50% of the measured streaming bandwidth, and
    otherwise below both; the two fractions are kept either way.
    """
    by_key: dict[tuple, list[dict]] = {}
    for case in cases:
        if case["suite"] == "examples":
            key = (case["params"]["example"], case["params"]["kind"])
            by_key.setdefault(key, []).append(case)
    bounds = []
    for (example, kind), group in by_key.items():
        group.sort(key=lambda case: case["params"]["batch"])
        smallest, largest = group[0], group[-1]
        small_times = {row["variant"]: row["unit_s"] for row in smallest["results"]}
        for row in largest["results"]:
            if "gflops" not in row and "gbps" not in row:
                continue
            flops_fraction = row.get("flops_fraction")
            bandwidth_fraction = row.get("bandwidth_fraction")
            small = small_times.get(row["variant"])
            if small is not None and row["unit_s"] < OVERHEAD_FACTOR * small:
                bound = (f"per-call overhead: batch {largest['params']['batch']} takes "
                         f"{row['unit_s'] / small:.1f}x the time of batch {smallest['params']['batch']}")
            elif flops_fraction is not None and flops_fraction >= 0.5:
                bound = "compute: at least 50% of the matmul peak"
            elif bandwidth_fraction is not None and bandwidth_fraction >= 0.5:
                bound = "bandwidth: at least 50% of the streaming bandwidth"
            else:
                bound = "below 50% of both the matmul peak and the streaming bandwidth"
            bounds.append({"case": largest["case"], "variant": row["variant"],
                           "gflops": row.get("gflops", 0.0),
                           "flops_fraction": flops_fraction, "gbps": row.get("gbps", 0.0),
                           "bandwidth_fraction": bandwidth_fraction, "bound": bound})
    return bounds


def example_targets(cases: list[dict]) -> list[dict]:
    """Return the scanned-training-loop ratios: torch eager step / JAX step, per example."""
    targets = []
    for case in cases:
        params = case["params"]
        if case["suite"] != "examples" or params["kind"] != "step" or params["batch"] != 1:
            continue
        rows = {row["variant"]: row for row in case["results"]}
        if "torch eager" not in rows:
            continue
        for variant in ("jax jit", "jax scan"):
            if variant in rows:
                ratio = rows["torch eager"]["unit_s"] / rows[variant]["unit_s"]
                targets.append({
                    "name": f"{params['example']} step, batch 1: torch eager / {variant}",
                    "measured": ratio, "limit": None, "met": None,
                    "detail": (f"torch eager {rows['torch eager']['unit_s'] * 1e6:.1f} us, "
                               f"{variant} {rows[variant]['unit_s'] * 1e6:.2f} us per step; "
                               "reported, no limit set")})
    return targets


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.torch_threads is not None:
        if args.torch_threads < 1:
            print(f"error: --torch-threads must be at least 1, got {args.torch_threads}",
                  file=sys.stderr)
            return 2
        import torch
        torch.set_num_threads(args.torch_threads)
    from benchmarks import report
    from benchmarks.devices import make_target
    from benchmarks.harness import loadavg

    try:
        target = make_target(args.device)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    suites = args.suite or list(SUITES)
    rounds = args.rounds or (5 if args.quick else 15)
    block_s = args.block_seconds or (0.02 if args.quick else 0.05)
    out = args.out or (os.path.join(RESULTS_DIR, "quick") if args.quick else RESULTS_DIR)
    if args.example:
        from twins.registry import get_example
        for name in args.example:
            get_example(name)  # raises with the list of known names

    started = time.perf_counter()
    data = {"schema": report.SCHEMA, "meta": report.run_metadata(args, target, argv), "peaks": {},
            "cases": [], "targets": [], "bounds": []}
    _log(f"benchmarks on {target.label}, rounds={rounds}, block={block_s}s, load {loadavg()}")
    stem = os.path.join(out, target.label)

    # Written after every suite, so an interrupted run keeps what it measured;
    # "complete" says whether every requested suite finished.
    def save(complete: bool) -> None:
        data["meta"]["complete"] = complete
        data["meta"]["loadavg_end"] = loadavg()
        data["meta"]["wall_s"] = time.perf_counter() - started
        report.write_json(stem + ".json", data)
        report.write_text(stem + ".md", report.markdown(data))

    if "peaks" in suites:
        from benchmarks.peaks import measure_peaks
        _log("peaks")
        peaks, cases = measure_peaks(target, quick=args.quick, rounds=rounds, block_s=block_s, log=_log)
        data["peaks"] = peaks
        data["cases"] += [case.as_dict() for case in cases]
        save(complete=False)

    if "examples" in suites:
        from benchmarks.examples import run_examples
        _log("examples")
        cases = run_examples(target, data["peaks"], quick=args.quick, rounds=rounds, block_s=block_s,
                             torch_compile=not args.no_torch_compile, examples=args.example, log=_log)
        data["cases"] += [case.as_dict() for case in cases]
        data["bounds"] = classify_bounds(data["cases"])
        data["targets"] += example_targets(data["cases"])
        save(complete=False)

    if "nqs" in suites or "netket" in suites:
        from benchmarks.nqs import run_nqs
        _log("nqs")

        def on_case(case) -> None:
            data["cases"].append(case.as_dict())
            save(complete=False)

        _, targets, netket_meta = run_nqs(
            target, quick=args.quick, rounds=rounds, block_s=block_s,
            torch_compile=not args.no_torch_compile, suites=suites,
            netket_python=args.netket_python, peaks=data["peaks"], on_case=on_case, log=_log)
        data["targets"] += targets
        data["meta"]["netket"] = netket_meta

    save(complete=True)
    written = [stem + ".json", stem + ".md"]
    if not args.no_plots:
        written += report.plot(data, out, prefix=target.label + "_")
    _log(f"done in {data['meta']['wall_s']:.0f} s; wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
