"""Flax initializers that draw from torch's default ``nn.Linear`` law.

torch draws a Linear weight (out x in) and bias from U(-1/sqrt(fan_in),
1/sqrt(fan_in)). Flax ``Dense`` defaults differ: kernel ~ truncated normal with
std 1/sqrt(fan_in) (sqrt(3) times torch's weight std) and bias = 0. Use these
initializers for a Flax model whose fresh init must behave like the torch
model's. They match torch in distribution only: the two RNGs differ, so parity
tests copy weights instead of re-drawing them.
"""

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

# variance_scaling(1/3, "fan_in", "uniform") draws U(-sqrt(3 s / fan_in), ...)
# with s = 1/3, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)). fan_in is read from the
# kernel's shape, which is (in, out) in Flax.
torch_linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def linear_init_bound(fan_in: int) -> float:
    """Return the half-width 1/sqrt(fan_in) of torch's default Linear init."""
    return 1.0 / math.sqrt(fan_in)


def torch_linear_bias_init(fan_in: int) -> jax.nn.initializers.Initializer:
    """Return a bias initializer drawing U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    A Flax bias initializer only sees the bias shape (out,), so ``fan_in`` (the
    layer's input size) has to be passed in.
    """
    bound = linear_init_bound(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


def torch_dense(features: int, fan_in: int, param_dtype=jnp.float32, **kwargs) -> nn.Dense:
    """Return an ``nn.Dense`` initialised with torch's default Linear law."""
    return nn.Dense(
        features,
        kernel_init=torch_linear_kernel_init,
        bias_init=torch_linear_bias_init(fan_in),
        param_dtype=param_dtype,
        **kwargs,
    )
