"""``Unregistered``: a plain array attribute that is not a Flax variable."""

import jax.numpy as jnp
from flax import linen as nn

from flax_impl.initializers import torch_dense


class Unregistered(nn.Module):
    """y = x K + b + c, where c = ones(3) is a plain array attribute.

    ``self.offset`` is set in ``setup`` but declared with neither ``self.param``
    nor ``self.variable``, so it is not in the variables returned by ``init``:
    ``jax.grad`` and optax never see it, ``flax.serialization`` does not save
    it, and ``jax.device_put(variables, device)`` does not move it. Under
    ``jax.jit`` it becomes a constant baked into the compiled function. Declare
    it with ``self.variable`` (see ``WithMask``) for state that belongs with
    the model.
    """

    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.linear = torch_dense(3, fan_in=3, param_dtype=self.param_dtype)
        self.offset = jnp.ones(3, self.param_dtype)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Map x (batch, 3) to (batch, 3)."""
        return self.linear(x) + self.offset
