"""``Scale``: a single scalar parameter."""

import jax.numpy as jnp
from flax import linen as nn


class Scale(nn.Module):
    """y = w x for a trainable scalar w, initialised to 1.

    ``self.param`` declares the parameter; its value lives in the variables
    returned by ``init``: ``{'params': {'weight': ()}}``.

    Example:
        >>> model = Scale()
        >>> variables = model.init(jax.random.key(0), jnp.ones(2))
        >>> model.apply(variables, jnp.full((2,), 3.0))
        Array([3., 3.], dtype=float32)
    """

    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Scale x (any shape) by the scalar weight."""
        weight = self.param("weight", nn.initializers.ones, (), self.param_dtype)
        return weight * x
