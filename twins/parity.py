"""Parity checks between the torch and Flax twins of each registered example.

Each check copies the torch model's weights into the Flax model by the rules in
``twins.convert`` and runs both on the same float64 numpy data, cast to the
dtype under test. It reports the largest absolute and relative error over the
named leaves.
"""

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import traverse_util

import flax_impl.training
import torch_impl.training
from twins import tolerances
from twins.convert import state_dict_to_variables
from twins.devices import DEVICE_PAIRS, jax_device, set_strict_gpu_precision
from twins.optim.catalog import CONFIGS
from twins.optim_map import build_transformation
from twins.optim_torch import make_torch_optimizer
from twins.registry import EXAMPLES, ExamplePair

TRAJECTORY_STEPS = 100
BATCH = 32

# name -> (torch optimizer factory, optax transformation). With dampening 0,
# torch SGD's momentum buffer b <- m b + g and optax.sgd's trace are the same
# recursion; torch Adam adds eps to sqrt(v_hat) as optax.adam does.
OPTIMIZERS = {
    "sgd_momentum": (lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
                     lambda: optax.sgd(0.05, momentum=0.9)),
    "adam": (lambda params: torch.optim.Adam(params, lr=0.01),
             lambda: optax.adam(0.01)),
}

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@dataclass
class ParityRow:
    """One line of the parity table."""

    example: str
    check: str
    dtype: str
    device: str
    max_abs: float
    max_rel: float
    tolerance: float
    passed: bool
    worst: str  # the leaf (and step) with the largest relative error

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Pair:
    """A torch model, its Flax twin with copied weights, and data on both sides."""

    torch_model: torch.nn.Module
    flax_model: object
    variables: dict
    x_torch: torch.Tensor
    y_torch: torch.Tensor
    x_jax: jax.Array
    y_jax: jax.Array


def _build(pair: ExamplePair, dtype, device: str, seed: int = 0) -> _Pair:
    torch_device, jax_platform = DEVICE_PAIRS[device]
    if "cuda" in device:
        set_strict_gpu_precision()
    torch_dtype = TORCH_DTYPES[np.dtype(dtype)]
    target = jax_device(jax_platform)

    torch_model = pair.torch_model(dtype=torch_dtype, seed=seed).to(torch_device)
    flax_model = pair.flax_model(dtype)
    x, y = pair.make_data(batch=BATCH, seed=seed)
    template = jax.eval_shape(flax_model.init, jax.random.key(0), jnp.asarray(x, dtype))
    variables = state_dict_to_variables(torch_model.state_dict(), template, pair.buffers)
    variables = jax.device_put(variables, target)
    for leaf in jax.tree_util.tree_leaves(variables):
        assert leaf.dtype == np.dtype(dtype), f"Flax leaf dtype {leaf.dtype}, expected {dtype}"

    return _Pair(
        torch_model, flax_model, variables,
        torch.as_tensor(x, dtype=torch_dtype, device=torch_device),
        torch.as_tensor(y, dtype=torch_dtype, device=torch_device),
        jax.device_put(jnp.asarray(x, dtype), target),
        jax.device_put(jnp.asarray(y, dtype), target),
    )


def leaf_errors(ours: dict, reference: dict) -> dict[str, tuple[float, float]]:
    """Return ``{leaf: (max_abs, max_rel)}`` for two flat dicts with the same keys.

    Raises ValueError if the key sets or shapes differ: structure is checked
    before values.
    """
    if set(ours) != set(reference):
        raise ValueError(f"leaf names differ: {sorted(ours)} vs {sorted(reference)}")
    errors = {}
    for name, ref in reference.items():
        a, b = np.asarray(ours[name]), np.asarray(ref)
        if a.shape != b.shape:
            raise ValueError(f"leaf {name}: shape {a.shape} vs reference {b.shape}")
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        scale = max(float(np.max(np.abs(b), initial=0.0)), np.finfo(b.dtype).tiny)
        max_abs = float(np.max(diff, initial=0.0))
        errors[name] = (max_abs, max_abs / scale)
    return errors


def _row(pair, check, dtype, device, errors) -> ParityRow:
    worst = max(errors, key=lambda k: errors[k][1])
    max_abs = max(e[0] for e in errors.values())
    max_rel = errors[worst][1]
    tol = tolerances.tolerance(dtype, check.split(":")[0])
    return ParityRow(pair.name, check, np.dtype(dtype).name, device, max_abs, max_rel, tol,
                     bool(max_rel <= tol), worst)


def _flat(tree) -> dict[str, np.ndarray]:
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def check_forward(pair: ExamplePair, dtype=np.float64, device: str = "cpu") -> ParityRow:
    """Compare ``torch_model(x)`` with ``flax_model.apply(variables, x)``."""
    p = _build(pair, dtype, device)
    with torch.no_grad():
        out_torch = p.torch_model(p.x_torch).cpu().numpy()
    out_flax = np.asarray(p.flax_model.apply(p.variables, p.x_jax))
    assert out_flax.dtype == np.dtype(dtype), f"Flax output dtype {out_flax.dtype}, expected {dtype}"
    return _row(pair, "forward", dtype, device, leaf_errors({"output": out_flax}, {"output": out_torch}))


def check_grad(pair: ExamplePair, dtype=np.float64, device: str = "cpu") -> ParityRow:
    """Compare the loss and its gradient for every parameter, mapped by name.

    torch gradients go through the same conversion as the weights, so a torch
    ``weight`` gradient (out, in) is compared with the Flax ``kernel`` gradient
    (in, out) transposed.
    """
    p = _build(pair, dtype, device)
    loss_torch, grads_torch = torch_impl.training.loss_and_grads(p.torch_model, p.x_torch, p.y_torch)
    loss_flax, grads_flax = flax_impl.training.loss_and_grads(p.flax_model, p.variables, p.x_jax, p.y_jax)
    grads_torch = state_dict_to_variables(grads_torch, p.variables["params"])
    ours = {"loss": np.asarray(loss_flax), **_flat(grads_flax)}
    reference = {"loss": loss_torch.cpu().numpy(), **_flat(grads_torch)}
    return _row(pair, "grad", dtype, device, leaf_errors(ours, reference))


def check_trajectory(pair: ExamplePair, optimizer: str, dtype=np.float64, device: str = "cpu",
                     steps: int = TRAJECTORY_STEPS) -> ParityRow:
    """Train both twins for ``steps`` steps and compare loss and parameters at every step.

    ``optimizer`` names an entry of ``OPTIMIZERS`` or of ``twins.optim.catalog.CONFIGS``
    (a torch configuration whose optax twin ``twins.optim_map`` builds).
    """
    p = _build(pair, dtype, device)
    if optimizer in OPTIMIZERS:
        torch_factory, optax_factory = OPTIMIZERS[optimizer]
        torch_optimizer, optax_transformation = torch_factory(p.torch_model.parameters()), optax_factory()
    else:
        config = CONFIGS[optimizer]
        torch_optimizer = make_torch_optimizer(config, p.torch_model.named_parameters())
        optax_transformation = build_transformation(config)
    torch_run = torch_impl.training.train(
        p.torch_model, torch_optimizer, p.x_torch, p.y_torch, steps)
    flax_run = flax_impl.training.train(
        p.flax_model, optax_transformation, p.variables, p.x_jax, p.y_jax, steps)

    # torch records {name: (steps, *shape)}; convert step by step to Flax layout.
    reference = {"loss": torch_run.losses}
    per_step = [state_dict_to_variables({k: v[t] for k, v in torch_run.params.items()},
                                        p.variables["params"]) for t in range(steps)]
    for name in _flat(per_step[0]):
        reference[name] = np.stack([_flat(tree)[name] for tree in per_step])
    ours = {"loss": flax_run.losses, **_flat(flax_run.params)}
    return _row(pair, f"trajectory:{optimizer}", dtype, device, leaf_errors(ours, reference))


def run_matrix(examples=None, dtypes=(np.float64, np.float32), devices=("cpu",),
               optimizers=tuple(OPTIMIZERS)) -> list[ParityRow]:
    """Run every check for every example, dtype and device pair."""
    rows = []
    for name in examples or EXAMPLES:
        pair = EXAMPLES[name]
        for device in devices:
            for dtype in dtypes:
                rows.append(check_forward(pair, dtype, device))
                rows.append(check_grad(pair, dtype, device))
                for optimizer in optimizers:
                    rows.append(check_trajectory(pair, optimizer, dtype, device))
    return rows
