"""``TinyLinear``: one ``nn.Dense(2)``, the smallest module with parameters."""

import jax.numpy as jnp
from flax import linen as nn

from flax_impl.initializers import torch_dense


class TinyLinear(nn.Module):
    """y = x K + b, with K of shape (3, 2) (in x out) and b of shape (2,).

    The kernel is the transpose of torch's weight (out x in). The parameters are
    not stored on the module: ``model.init(key, x)`` returns them as
    ``{'params': {'linear': {'kernel': (3, 2), 'bias': (2,)}}}``.
    Init: torch's default Linear law, K and b ~ U(-1/sqrt(3), 1/sqrt(3)).

    Example:
        >>> model = TinyLinear()
        >>> variables = model.init(jax.random.key(0), jnp.ones((4, 3)))
        >>> model.apply(variables, jnp.ones((4, 3))).shape
        (4, 2)
    """

    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.linear = torch_dense(2, fan_in=3, param_dtype=self.param_dtype)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Map x (batch, 3) to (batch, 2)."""
        return self.linear(x)
