"""The registered example pairs: forward, forward + gradient, and one Adam step.

Every case runs the same float32 data through the torch twin and the Flax twin:

* ``torch eager``: the module as written; the step uses ``Adam(fused=True)``,
  torch's fastest eager optimizer on one device.
* ``torch compile``: ``torch.compile(model, fullgraph=True, dynamic=False)``;
  the step also compiles ``optimizer.step`` (default ``foreach`` Adam, the
  implementation torch.compile supports). Its first call is the compile time.
* ``jax jit``: one ``jax.jit`` of the whole computation; the step donates the
  parameters and the optimizer state, which it overwrites, so XLA updates them
  in place instead of allocating new buffers every call.
* ``jax scan``: ``lax.scan`` over ``SCAN_STEPS`` steps in one compiled call,
  reported per step. A training loop in this form pays Python dispatch once per
  ``SCAN_STEPS`` steps instead of once per step.

The reference for ratios is ``jax jit``.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import torch

import flax_impl.training
import torch_impl.training
from benchmarks.devices import TORCH_DTYPES, Target
from benchmarks.harness import CaseResult, SkipVariant, Variant, run_case, timed_first_call
from twins.registry import EXAMPLES, ExamplePair

KINDS = ("forward", "grad", "step")
LEARNING_RATE = 1e-3
SCAN_STEPS = 100
REFERENCE = "jax jit"


def matmul_layers(pair: ExamplePair) -> list[tuple[int, int]]:
    """Return (in, out) of every 2-D weight, in the order the forward uses them."""
    model = pair.torch_model(dtype=torch.float32)
    return [tuple(p.shape[::-1]) for name, p in model.named_parameters() if p.ndim == 2]


def work_estimate(pair: ExamplePair, batch: int, kind: str, dtype: str) -> dict:
    """Estimate the FLOPs and the minimal memory traffic of one call.

    FLOPs count only the matmuls (2 * batch * in * out per layer); the
    gradient adds two matmuls per layer (weight and input gradients, except the
    input gradient of the first layer) and the step adds about 10 FLOPs per
    parameter for Adam. Bytes count reading x and y, writing every layer's
    output and, for the gradient, reading it back once and writing its
    gradient. Both are estimates for judging the bound, not exact counts.
    """
    layers = matmul_layers(pair)
    itemsize = np.dtype(dtype).itemsize
    n_in = int(np.prod(pair.input_shape))
    n_out = int(np.prod(pair.output_shape))
    forward_flops = 2 * batch * sum(i * o for i, o in layers)
    activations = batch * sum(o for _, o in layers) if layers else batch * n_out
    io_bytes = batch * (n_in + n_out) * itemsize
    if kind == "forward":
        return {"flops": forward_flops, "bytes": io_bytes + activations * itemsize}
    backward_flops = 2 * forward_flops - (2 * batch * layers[0][0] * layers[0][1] if layers else 0)
    n_params = sum(p.numel() for p in pair.torch_model(dtype=torch.float32).parameters())
    flops = forward_flops + backward_flops + (10 * n_params if kind == "step" else 0)
    return {"flops": flops, "bytes": io_bytes + 3 * activations * itemsize}


def _torch_parts(pair: ExamplePair, target: Target, batch: int, dtype: str):
    x_np, y_np = pair.make_data(batch=batch, seed=0)
    model = pair.torch_model(dtype=TORCH_DTYPES[dtype]).to(target.torch_device)
    x, y = target.to_torch(x_np, dtype), target.to_torch(y_np, dtype)
    if pair.name == "unregistered" and target.torch_device.type != "cpu":
        raise SkipVariant("the unregistered 'offset' tensor stays on the CPU after "
                          "model.to(device), which is what this example shows, so its "
                          "forward fails on another device")
    return model, x, y


def _torch_builder(pair: ExamplePair, target: Target, batch: int, dtype: str, kind: str,
                   compiled: bool):
    def build() -> Variant:
        model, x, y = _torch_parts(pair, target, batch, dtype)
        mse = torch_impl.training.mse_loss
        forward = torch.compile(model, fullgraph=True, dynamic=False) if compiled else model
        if kind == "step":
            if compiled:
                optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
                optimizer_step = torch.compile(optimizer.step, fullgraph=False)
            else:
                optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True)
                optimizer_step = optimizer.step

        def one_call():
            if kind == "forward":
                with torch.no_grad():
                    forward(x)
                return
            model.zero_grad(set_to_none=True)
            mse(forward(x), y).backward()
            if kind == "step":
                optimizer_step()

        def run(calls: int) -> None:
            for _ in range(calls):
                one_call()
            target.torch_sync()

        compile_s = timed_first_call(run) if compiled else None
        run(3)
        name = "torch compile" if compiled else "torch eager"
        return Variant(name, "torch", run, compile_s=compile_s)

    return build


def _jax_parts(pair: ExamplePair, target: Target, batch: int, dtype: str):
    x_np, y_np = pair.make_data(batch=batch, seed=0)
    model = pair.flax_model(np.dtype(dtype))
    x, y = target.to_jax(x_np, dtype), target.to_jax(y_np, dtype)
    variables = jax.device_put(model.init(jax.random.key(0), x), target.jax_device)
    params = variables["params"]
    rest = {key: value for key, value in variables.items() if key != "params"}
    return model, params, rest, x, y


def _jax_builder(pair: ExamplePair, target: Target, batch: int, dtype: str, kind: str,
                 scanned: bool):
    def build() -> Variant:
        model, params, rest, x, y = _jax_parts(pair, target, batch, dtype)
        mse = flax_impl.training.mse_loss
        optimizer = optax.adam(LEARNING_RATE)

        def loss_fn(params, rest, x, y):
            return mse(model.apply({**rest, "params": params}, x), y)

        if kind == "forward":
            apply = jax.jit(model.apply)
            variables = {**rest, "params": params}

            def run(calls: int) -> None:
                for _ in range(calls):
                    out = apply(variables, x)
                out.block_until_ready()
        elif kind == "grad":
            value_and_grad = jax.jit(jax.value_and_grad(loss_fn))

            def run(calls: int) -> None:
                for _ in range(calls):
                    out = value_and_grad(params, rest, x, y)
                jax.block_until_ready(out)
        else:
            def step(params, opt_state, rest, x, y):
                loss, grads = jax.value_and_grad(loss_fn)(params, rest, x, y)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state, loss

            if scanned:
                def many_steps(params, opt_state, rest, x, y):
                    def body(carry, _):
                        params, opt_state, loss = step(*carry, rest, x, y)
                        return (params, opt_state), loss
                    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), None,
                                                               length=SCAN_STEPS)
                    return params, opt_state, losses
                compiled_step = jax.jit(many_steps, donate_argnums=(0, 1))
            else:
                compiled_step = jax.jit(step, donate_argnums=(0, 1))
            state = {"params": params, "opt_state": optimizer.init(params)}

            def run(calls: int) -> None:
                params, opt_state = state["params"], state["opt_state"]
                for _ in range(calls):
                    params, opt_state, loss = compiled_step(params, opt_state, rest, x, y)
                state["params"], state["opt_state"] = jax.block_until_ready((params, opt_state))

        compile_s = timed_first_call(run)
        run(3)
        if scanned:
            return Variant("jax scan", "jax", run, compile_s=compile_s, steps_per_call=SCAN_STEPS,
                           note=f"lax.scan over {SCAN_STEPS} steps per call; times are per step")
        return Variant("jax jit", "jax", run, compile_s=compile_s)

    return build


# With --quick only this example gets torch.compile variants: each compile takes
# seconds, more than every other quick case together.
QUICK_COMPILE_EXAMPLES = ("mlp",)


def run_examples(target: Target, peaks: dict, *, quick: bool, rounds: int, block_s: float,
                 torch_compile: bool, examples: list[str] | None = None, batches=None,
                 log=print) -> list[CaseResult]:
    """Time every example, kind and batch size; return the cases."""
    names = examples or list(EXAMPLES)
    compile_names = QUICK_COMPILE_EXAMPLES if quick else names
    batches = batches or ([1, 4096] if quick else [1, 64, 4096, 262_144])
    dtype = "float32"
    cases = []
    for name in names:
        pair = EXAMPLES[name]
        for kind in KINDS:
            for batch in batches:
                builders = [
                    ("torch eager", _torch_builder(pair, target, batch, dtype, kind, compiled=False)),
                    ("jax jit", _jax_builder(pair, target, batch, dtype, kind, scanned=False)),
                ]
                if torch_compile and name in compile_names:
                    builders.append(("torch compile",
                                     _torch_builder(pair, target, batch, dtype, kind, compiled=True)))
                if kind == "step":
                    builders.append(("jax scan",
                                     _jax_builder(pair, target, batch, dtype, kind, scanned=True)))
                case = run_case(
                    "examples", f"{name} {kind} b={batch}",
                    {"example": name, "kind": kind, "batch": batch, "dtype": dtype},
                    builders, rounds=rounds, block_s=block_s,
                    work=work_estimate(pair, batch, kind, dtype), reference=REFERENCE,
                    peaks_by_framework={fw: peaks.get(fw, {}).get(dtype) for fw in ("torch", "jax")},
                    log=log)
                cases.append(case)
                log(_summary(case))
    return cases


def _summary(case: CaseResult) -> str:
    parts = [f"{row['variant']} {row['unit_s'] * 1e6:.1f}us" for row in case.results]
    return f"  {case.case}: " + ", ".join(parts)
