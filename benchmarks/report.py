"""Results on disk: run metadata, the JSON file, a Markdown table and PNG plots."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata

SCHEMA = "nqs-twins-benchmarks/1"

# Keys every results file has at its top level.
TOP_LEVEL_KEYS = ("schema", "meta", "peaks", "cases", "targets", "bounds")

# Keys every row of ``cases[i]["results"]`` has.
RESULT_KEYS = ("variant", "framework", "median_s", "p25_s", "p75_s", "min_s", "rounds",
               "calls_per_block", "steps_per_call", "unit_s", "compile_s", "items_per_call",
               "items_per_s", "ratio_to_reference", "reference", "peak_rss_mb", "rss_delta_mb",
               "note")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_state() -> dict:
    """Return the checked-out commit and whether tracked files differ from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "modified": None}
    return {"commit": commit, "modified": bool(status.strip())}


def run_metadata(args, target, argv: list[str]) -> dict:
    """Return versions, CPU, threads, device and load for the results file."""
    import jax
    import torch

    meta = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *argv]),
        "git": _git_state(),
        "quick": bool(args.quick),
        "device": target.label,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "xla_threads": "XLA:CPU uses every core it is given; there is no per-process setting",
        "env": {key: os.environ.get(key) for key in
                ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
                 "JAX_PLATFORMS")},
        "jax_devices": [str(device) for device in jax.devices()],
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "loadavg_start": [round(value, 2) for value in os.getloadavg()],
        "versions": {name: _version(name) for name in
                     ("torch", "jax", "jaxlib", "flax", "optax", "numpy", "nqs-twins")},
    }
    if target.label == "cuda":
        meta["cuda_device"] = torch.cuda.get_device_name(target.torch_device)
        meta["torch_cuda"] = torch.version.cuda
    return meta


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as handle:
        json.dump(data, handle, indent=1, default=_json_default)
        handle.write("\n")
    os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(handle.name, path)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(handle.name, path)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _spread(row: dict) -> str:
    scale = row["steps_per_call"]
    return f"{_time(row['p25_s'] / scale)} - {_time(row['p75_s'] / scale)}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def markdown(data: dict) -> str:
    """Return the whole run as Markdown: metadata, peaks, targets, bounds, every case."""
    meta = data["meta"]
    lines = [f"# Benchmark run {meta['created_utc']} ({meta['device']}"
             f"{', quick' if meta['quick'] else ''}"
             f"{'' if meta.get('complete', True) else ', incomplete'})", ""]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    lines += [f"* Machine: {meta['cpu_model']}, {meta['cpu_count']} CPUs "
              f"({meta['cpu_affinity']} usable), torch threads {meta['torch_threads']}, "
              f"OpenBLAS threads {meta.get('env', {}).get('OPENBLAS_NUM_THREADS') or 'default'}; "
              f"{meta.get('cuda_device', 'no GPU')}.",
              f"* Versions: {versions}; Python {meta['python']}.",
              f"* Load average (1, 5, 15 min) at start {meta['loadavg_start']}, "
              f"at end {meta.get('loadavg_end')}.",
              f"* Command: `{meta['command']}` at commit {meta.get('git', {}).get('commit')}"
              f"{' with modified files' if meta.get('git', {}).get('modified') else ''}.", ""]
    if data["peaks"]:
        lines += ["## Peaks", "", "| framework | dtype | matmul GFLOP/s | stream GB/s |",
                  "| --- | --- | ---: | ---: |"]
        for framework, by_dtype in data["peaks"].items():
            for dtype, peak in by_dtype.items():
                lines.append(f"| {framework} | {dtype} | {peak['matmul_gflops']:.1f} | "
                             f"{peak['copy_gbps']:.1f} |")
        lines.append("")
    if data["targets"]:
        lines += ["## Targets", "", "| target | measured | limit | met | how |",
                  "| --- | ---: | ---: | --- | --- |"]
        for target in data["targets"]:
            measured = "" if target["measured"] is None else f"{target['measured']:.2f}"
            limit = "" if target["limit"] is None else f"{target['limit']:.2f}"
            if target["measured"] is None:
                met = "not measured"
            elif target["limit"] is None:
                met = "no limit"
            else:
                met = "yes" if target["met"] else "no"
            lines.append(f"| {target['name']} | {measured} | {limit} | {met} | {target['detail']} |")
        lines.append("")
    if data["bounds"]:
        lines += ["## What bounds the large cases", "", "| case | variant | GFLOP/s (of peak) | "
                  "GB/s (of stream) | bound |", "| --- | --- | ---: | ---: | --- |"]
        for bound in data["bounds"]:
            gflops = ("" if bound["flops_fraction"] is None
                      else f"{bound['gflops']:.2f} ({_percent(bound['flops_fraction'])})")
            gbps = ("" if bound["bandwidth_fraction"] is None
                    else f"{bound['gbps']:.2f} ({_percent(bound['bandwidth_fraction'])})")
            lines.append(f"| {bound['case']} | {bound['variant']} | {gflops} | {gbps} | "
                         f"{bound['bound']} |")
        lines.append("")
    suites = []
    for case in data["cases"]:
        if case["suite"] not in suites:
            suites.append(case["suite"])
    for suite in suites:
        lines += [f"## {suite}", "", "| case | variant | median / step | p25 - p75 | ratio | "
                  "compile (first call) | items/s | GFLOP/s | peak RSS +MiB | load 1 min |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for case in data["cases"]:
            if case["suite"] != suite:
                continue
            for row in case["results"]:
                gflops = f"{row['gflops']:.2f}" if "gflops" in row else ""
                items = f"{row['items_per_s']:.3g}" if row["items_per_call"] > 1 else ""
                rss = "" if row["rss_delta_mb"] is None else f"{row['rss_delta_mb']:.0f}"
                lines.append(
                    f"| {case['case']} | {row['variant']} | {_time(row['unit_s'])} | {_spread(row)} | "
                    f"{row['ratio_to_reference']:.2f}x {row['reference']} | {_time(row['compile_s'])} | "
                    f"{items} | {gflops} | {rss} | {case['loadavg_before'][0]} |")
            for skipped in case["skipped"]:
                lines.append(f"| {case['case']} | {skipped['name']} | skipped: {skipped['reason']} "
                             "| | | | | | | |")
        lines.append("")
    return "\n".join(lines)


def plot(data: dict, directory: str, prefix: str) -> list[str]:
    """Write time-vs-size PNG plots; return their paths.

    One figure per example kind (time per step against batch size, one panel per
    example) and one per NQS sweep (time against N, samples or alpha).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for case in data["cases"]:
        params = case["params"]
        if case["suite"] == "examples":
            groups.setdefault(("examples", params["kind"]), []).append(case)
        elif case["suite"] == "nqs" and "sweep" in params:
            groups.setdefault(("nqs", params["sweep"]), []).append(case)

    for (suite, key), cases in groups.items():
        if suite == "examples":
            panels = sorted({case["params"]["example"] for case in cases})
            x_key, x_label = "batch", "batch size"
        else:
            panels = sorted({case["params"]["stage"] for case in cases})
            x_key, x_label = key, key
        figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
        for axis, panel in zip(axes[0], panels):
            series: dict[str, list[tuple[float, float]]] = {}
            for case in cases:
                label = case["params"]["example"] if suite == "examples" else case["params"]["stage"]
                if label != panel:
                    continue
                for row in case["results"]:
                    series.setdefault(row["variant"], []).append((case["params"][x_key], row["unit_s"]))
            for variant, points in sorted(series.items()):
                points.sort()
                axis.loglog([p[0] for p in points], [p[1] for p in points], marker="o", label=variant)
            axis.set_title(panel)
            axis.set_xlabel(x_label)
            axis.set_ylabel("seconds per step")
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=7)
        figure.suptitle(f"{suite}: {key} ({data['meta']['device']})")
        figure.tight_layout()
        path = os.path.join(directory, f"{prefix}{suite}_{key}.png")
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written
