"""``WithMask``: a non-trainable ``buffers`` collection next to ``params``."""

import jax.numpy as jnp
from flax import linen as nn

from flax_impl.initializers import torch_dense


class WithMask(nn.Module):
    """y = (x K + b) * m, with m = ones(3) in the ``buffers`` collection.

    ``init`` returns ``{'params': {'linear': ...}, 'buffers': {'mask': (3,)}}``.
    Differentiate with respect to ``variables['params']`` only and pass the
    buffers back in at ``apply``: the mask then gets no gradient and optax never
    updates it, as with torch's ``register_buffer``. It is saved and moved
    whenever the whole ``variables`` dict is.
    """

    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.linear = torch_dense(3, fan_in=3, param_dtype=self.param_dtype)
        self.mask = self.variable("buffers", "mask", jnp.ones, (3,), self.param_dtype)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Map x (batch, 3) to (batch, 3)."""
        return self.linear(x) * self.mask.value
