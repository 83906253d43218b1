"""The machine's working limits: matmul GFLOP/s and streaming bandwidth.

Both frameworks are measured on the same work, interleaved. A case's achieved
fraction is taken against the peak of its own framework and dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.devices import Target
from benchmarks.harness import CaseResult, Variant, run_case, timed_first_call


def _matmul_builders(target: Target, n: int, dtype: str):
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((n, n)), rng.standard_normal((n, n))

    def torch_builder() -> Variant:
        a, b = target.to_torch(a_np, dtype), target.to_torch(b_np, dtype)
        out = torch.empty_like(a)

        def run(calls: int) -> None:
            for _ in range(calls):
                torch.mm(a, b, out=out)
            target.torch_sync()

        run(2)
        return Variant("torch", "torch", run)

    def jax_builder() -> Variant:
        a, b = target.to_jax(a_np, dtype), target.to_jax(b_np, dtype)
        matmul = jax.jit(jnp.matmul)

        def run(calls: int) -> None:
            for _ in range(calls):
                out = matmul(a, b)
            out.block_until_ready()

        compile_s = timed_first_call(run)
        run(2)
        return Variant("jax", "jax", run, compile_s=compile_s)

    return [("torch", torch_builder), ("jax", jax_builder)]


def _stream_builders(target: Target, count: int, dtype: str):
    """``x <- x + 1`` in place over ``count`` elements: one read and one write each.

    JAX donates ``x``, so XLA writes the result into the same buffer instead of
    allocating a fresh array per call (several times slower on this kind of
    CPU). A separate, donated output buffer would not do: jit drops an argument
    the computation never reads, and its donation with it.
    """
    x_np = np.ones(count)

    def torch_builder() -> Variant:
        x = target.to_torch(x_np, dtype)

        def run(calls: int) -> None:
            for _ in range(calls):
                x.add_(1.0)
            target.torch_sync()

        run(2)
        return Variant("torch", "torch", run)

    def jax_builder() -> Variant:
        state = {"x": target.to_jax(x_np, dtype)}
        add_one = jax.jit(lambda x: x + 1.0, donate_argnums=0)

        def run(calls: int) -> None:
            x = state["x"]
            for _ in range(calls):
                x = add_one(x)
            state["x"] = x.block_until_ready()

        compile_s = timed_first_call(run)
        run(2)
        return Variant("jax", "jax", run, compile_s=compile_s)

    return [("torch", torch_builder), ("jax", jax_builder)]


def measure_peaks(target: Target, *, quick: bool, rounds: int, block_s: float,
                  log=print) -> tuple[dict, list[CaseResult]]:
    """Measure matmul and streaming peaks per framework and dtype.

    Returns ``(peaks, cases)``: ``peaks[framework][dtype]`` is
    ``{"matmul_gflops": ..., "copy_gbps": ...}`` and ``cases`` holds the raw
    measurements for the results file.
    """
    n = 1024 if quick else 2048
    count = (16 if quick else 64) * 2**20
    peaks: dict = {"torch": {}, "jax": {}}
    cases = []
    for dtype in ("float32", "float64"):
        itemsize = np.dtype(dtype).itemsize
        matmul = run_case("peaks", f"matmul {n}^3 {dtype}", {"n": n, "dtype": dtype},
                          _matmul_builders(target, n, dtype), rounds=rounds, block_s=block_s,
                          work={"flops": 2 * n**3})
        stream = run_case("peaks", f"stream x+=1 {count // 2**20}Mi {dtype}",
                          {"count": count, "dtype": dtype},
                          _stream_builders(target, count, dtype), rounds=rounds, block_s=block_s,
                          work={"bytes": 2 * count * itemsize})
        streams = {row["framework"]: row for row in stream.results}
        for row in matmul.results:
            framework = row["framework"]
            peaks[framework][dtype] = {"matmul_gflops": row["gflops"],
                                       "copy_gbps": streams[framework]["gbps"]}
            log(f"  peak {framework:5s} {dtype}: matmul {row['gflops']:7.1f} GFLOP/s, "
                f"stream {streams[framework]['gbps']:6.1f} GB/s")
        cases += [matmul, stream]
    return peaks, cases
