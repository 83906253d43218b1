"""``MLP``: nested modules through ``nn.Sequential``."""

import jax.numpy as jnp
from flax import linen as nn

from flax_impl.initializers import torch_dense


class MLP(nn.Module):
    """y = relu(x K1 + b1) K2 + b2, a 4 -> 16 -> 1 perceptron.

    ``nn.Sequential`` assigned in ``setup`` names its layers ``layers_<index>``
    and counts the activation too, so the parameters are
    ``net/layers_0/kernel`` (4, 16), ``net/layers_0/bias`` (16,),
    ``net/layers_2/kernel`` (16, 1) and ``net/layers_2/bias`` (1,).
    ``jax.nn.relu`` has derivative 0 at exactly 0, as torch's ReLU does
    (``jnp.maximum(x, 0)`` would return 0.5 there).
    Init: torch's default Linear law per layer, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    param_dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.net = nn.Sequential([
            torch_dense(16, fan_in=4, param_dtype=self.param_dtype),
            nn.relu,
            torch_dense(1, fan_in=16, param_dtype=self.param_dtype),
        ])

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Map x (batch, 4) to (batch, 1)."""
        return self.net(x)
