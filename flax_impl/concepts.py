"""The tutorial's ``nn.Module`` concepts in Flax, one small function each.

Each function has a twin of the same name in ``torch_impl.concepts``. A Flax
module stores no parameters, so every function here takes the ``variables`` dict
that ``model.init`` returned.
"""

import os
import tempfile

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import serialization, traverse_util


def call_vs_forward(model: nn.Module, variables: dict, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return ``model.apply(variables, x)`` and ``model.bind(variables)(x)``.

    ``apply`` is the functional call, the counterpart of ``model(x)``. ``bind``
    returns a module with its variables attached, which can be called like a
    torch module. Interceptors (``nn.intercept_methods``) run for both calls,
    because Flax has no separate hook-free ``forward``.
    """
    return model.apply(variables, x), model.bind(variables)(x)


def record_intermediate(model: nn.Module, variables: dict, x: jnp.ndarray, submodule: str) -> jnp.ndarray:
    """Run ``model.apply(variables, x)`` and return the output of submodule ``submodule``.

    ``submodule`` is a Flax path such as ``"net/layers_0"``. An interceptor
    (``nn.intercept_methods``) wraps every module method call; it records the
    output when the calling module's path matches, like a torch forward hook.
    ``capture_intermediates=True`` in ``apply`` is the other way to get it.
    """
    target = tuple(submodule.split("/"))
    recorded = []

    def interceptor(next_fun, args, kwargs, context):
        output = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.path == target:
            recorded.append(output)
        return output

    with nn.intercept_methods(interceptor):
        model.apply(variables, x)
    return recorded[0]


def parameter_names(variables: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Return ``(path, shape)`` for every leaf of ``variables['params']``, in sorted path order.

    Only the ``params`` collection contains parameters, so the ``buffers``
    collection and plain attributes do not appear.
    """
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    return [(path, tuple(leaf.shape)) for path, leaf in sorted(flat.items())]


def make_optimizer(variables: dict, lr: float = 0.1) -> tuple[optax.GradientTransformation, optax.OptState]:
    """Return SGD and its state for ``variables['params']``: optax updates only the tree it is given."""
    optimizer = optax.sgd(lr)
    return optimizer, optimizer.init(variables["params"])


def save_state_dict(variables: dict, path: str) -> None:
    """Write ``variables`` (every collection) with ``flax.serialization`` to ``path`` atomically.

    The file is written next to ``path`` and renamed over it, so an interrupted
    save never leaves a truncated checkpoint where a good one was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as handle:
        handle.write(serialization.to_bytes(variables))
    os.replace(handle.name, path)


def load_state_dict(template: dict, path: str) -> dict:
    """Return the variables stored at ``path``, restored into the structure of ``template``.

    ``from_bytes`` raises if a key of ``template`` is missing from the file.
    """
    with open(path, "rb") as handle:
        return serialization.from_bytes(template, handle.read())


def move_to_device(variables: dict, device: jax.Device) -> dict:
    """Return a copy of ``variables`` committed to ``device`` (JAX arrays are immutable).

    A plain array attribute (``Unregistered.offset``) is not in ``variables``,
    so it stays where it was created.
    """
    return jax.device_put(variables, device)


def describe(model: nn.Module, x: jnp.ndarray) -> str:
    """Return ``nn.tabulate``'s table: each submodule's path, inputs, outputs and parameters."""
    return nn.tabulate(model, jax.random.key(0), console_kwargs={"width": 120, "force_terminal": False})(x)
