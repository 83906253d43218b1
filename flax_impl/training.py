"""Loss, gradient and training loop for the examples, with jax.grad and optax."""

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn


def mse_loss(prediction: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """Return the mean squared error over every element."""
    return jnp.mean((prediction - target) ** 2)


def loss_and_grads(model: nn.Module, variables: dict, x: jnp.ndarray, y: jnp.ndarray):
    """Return the loss and the gradient pytree of ``variables['params']``.

    Only the ``params`` collection is differentiated; other collections (the
    ``buffers`` of ``WithMask``) are passed through unchanged, so they get no
    gradient, like torch buffers.
    """
    params = variables["params"]

    def loss_fn(params):
        return mse_loss(model.apply({**variables, "params": params}, x), y)

    return jax.value_and_grad(loss_fn)(params)


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation):
    """Return a jitted ``step(params, opt_state, rest, x, y) -> (params, opt_state, loss)``.

    ``rest`` contains the non-``params`` collections. This is torch's
    ``zero_grad(); loss.backward(); optimizer.step()`` as one pure function:
    nothing accumulates, so there is nothing to zero.
    """

    def loss_fn(params, rest, x, y):
        return mse_loss(model.apply({**rest, "params": params}, x), y)

    @jax.jit
    def step(params, opt_state, rest, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss

    return step


@dataclass
class Trajectory:
    """Loss before each step and every parameter after it, as numpy.

    ``losses`` has shape (steps,); ``params`` is the params pytree with a
    leading (steps,) axis on every leaf.
    """

    losses: np.ndarray
    params: Any


def train(model: nn.Module, optimizer: optax.GradientTransformation, variables: dict,
          x: jnp.ndarray, y: jnp.ndarray, steps: int) -> Trajectory:
    """Run ``steps`` full-batch steps of ``optimizer`` on the MSE loss."""
    step = make_train_step(model, optimizer)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    opt_state = optimizer.init(params)

    losses, history = [], []
    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state, rest, x, y)
        losses.append(loss)
        history.append(params)
    stacked = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *history)
    return Trajectory(np.asarray(jnp.stack(losses)), stacked)
