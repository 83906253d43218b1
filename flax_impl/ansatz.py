"""Neural quantum states as ``flax.linen.Module``: s (B, N) -> log psi(s) (B,).

Configurations are spins s_i = +-1 in a float array; log psi is complex in
general (a sign or phase of psi is its imaginary part).
"""

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from flax_impl.initializers import torch_dense

LOG2 = math.log(2.0)
# NetKet's RBM draws every parameter from N(0, 0.01^2).
RBM_INIT_STD = 0.01


def log_cosh(x: jnp.ndarray) -> jnp.ndarray:
    """Return log cosh(x) for real or complex ``x`` without overflow.

    log cosh(x) = y + log1p(exp(-2 y)) - log 2 with y = x where Re x >= 0 and
    y = -x elsewhere (cosh is even), so |exp(-2 y)| <= 1. For real x that is
    logaddexp(x, -x) - log 2, one fused function in torch's twin. For complex
    x the phase is kept; the branch may differ from ``jnp.log(jnp.cosh(x))``
    by a multiple of 2 pi i.
    """
    if not jnp.iscomplexobj(x):
        return jnp.logaddexp(x, -x) - LOG2
    y = jnp.where(x.real < 0, -x, x)
    return y + jnp.log1p(jnp.exp(-2.0 * y)) - LOG2


class NeuralQuantumState(nn.Module):
    """Base class: ``log_psi(s)`` maps configurations (B, N) to log psi (B,).

    ``__call__`` calls ``log_psi``, so ``model.apply(variables, s)`` returns
    log psi. Subclasses implement ``log_psi`` (as the ``nn.compact`` method
    when they create parameters inline).
    """

    def log_psi(self, s: jnp.ndarray) -> jnp.ndarray:
        """Return log psi(s), shape (B,), for spins ``s`` (B, N)."""
        raise NotImplementedError

    def __call__(self, s: jnp.ndarray) -> jnp.ndarray:
        """Return ``log_psi(s)``."""
        return self.log_psi(s)


class RBM(NeuralQuantumState):
    """Restricted Boltzmann machine: log psi(s) = s . a + sum_j log cosh(b_j + (s W)_j).

    Parameters, with the names and layout of NetKet's RBM:
        ``Dense/kernel``: W, shape (N, H) (in x out), H = int(alpha * N);
        ``Dense/bias``: b, shape (H,), the hidden bias;
        ``visible_bias``: a, shape (N,).
    N is read from the input at ``init``. Init: every entry ~ N(0, 0.01^2),
    NetKet's law; complex entries split the variance equally between real and
    imaginary parts. The torch twin takes N in its constructor and stores W as
    a (H, N) weight.

    Attributes:
        alpha: hidden-unit density H / N.
        param_dtype: parameter dtype, real or complex (``jnp.complex128``).
        use_hidden_bias: create b (otherwise b = 0).
        use_visible_bias: create a (otherwise a = 0).
    """

    alpha: float = 1
    param_dtype: jnp.dtype = jnp.float64
    use_hidden_bias: bool = True
    use_visible_bias: bool = True

    @nn.compact
    def log_psi(self, s: jnp.ndarray) -> jnp.ndarray:
        """Return log psi(s), shape (B,), for spins ``s`` (B, N)."""
        n_sites = s.shape[-1]
        init = jax.nn.initializers.normal(RBM_INIT_STD)
        dense = nn.Dense(
            _hidden_units(n_sites, self.alpha),
            use_bias=self.use_hidden_bias,
            param_dtype=self.param_dtype,
            kernel_init=init,
            bias_init=init,
            name="Dense",
        )
        s = s.astype(jnp.promote_types(s.dtype, self.param_dtype))
        value = jnp.sum(log_cosh(dense(s)), axis=-1)
        if self.use_visible_bias:
            visible_bias = self.param("visible_bias", init, (n_sites,), self.param_dtype)
            value = value + s @ visible_bias
        return value


class FFN(NeuralQuantumState):
    """Feed-forward ansatz with real parameters and complex output.

    log psi(s) = A(s) + i Phi(s), with a log amplitude A and a phase Phi, each
    a perceptron N -> H -> 1 with a tanh hidden layer, H = int(alpha * N). The
    phase lets it represent a wavefunction with signs (the Heisenberg ground
    state without the Marshall rule); the parameters stay real.

    Parameters (``nn.Sequential`` counts the tanh as ``layers_1``):
        ``amplitude/layers_0/kernel`` (N, H), ``amplitude/layers_0/bias`` (H,),
        ``amplitude/layers_2/kernel`` (H, 1), and the same under ``phase/``.
        Kernels are (in x out), the transpose of the torch twin's weights.
    The output layers have no bias: it would only change the norm and the
    global phase of psi, so its energy gradient is zero up to rounding, and
    Adam would turn that rounding noise into full-size steps.
    Init: torch's default Linear law, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Unlike the RBM, N is a field: the bias init law needs the fan-in in ``setup``.

    NOTE: SR does not find the sign structure from every init. On the N = 12
    Heisenberg chain (alpha = 2, exact estimator) torch seeds 0 and 5 of 0-5
    stall at 9-13% energy error, the others reach 5e-4; restart from another
    seed when the energy plateaus far above the exact value.

    Attributes:
        n_sites: N, the number of spins.
        alpha: hidden-unit density H / N.
        param_dtype: real parameter dtype.
    """

    n_sites: int
    alpha: float = 1
    param_dtype: jnp.dtype = jnp.float64

    def setup(self):
        if jnp.issubdtype(self.param_dtype, jnp.complexfloating):
            raise ValueError(
                f"FFN has real parameters, got param_dtype={self.param_dtype}; "
                f"use float32 or float64."
            )
        hidden = _hidden_units(self.n_sites, self.alpha)
        self.amplitude = _perceptron(self.n_sites, hidden, self.param_dtype)
        self.phase = _perceptron(self.n_sites, hidden, self.param_dtype)

    def log_psi(self, s: jnp.ndarray) -> jnp.ndarray:
        """Return log psi(s) = A(s) + i Phi(s), complex, shape (B,)."""
        s = s.astype(self.param_dtype)
        return jax.lax.complex(self.amplitude(s)[:, 0], self.phase(s)[:, 0])


def _perceptron(n_in: int, hidden: int, param_dtype) -> nn.Sequential:
    return nn.Sequential([torch_dense(hidden, fan_in=n_in, param_dtype=param_dtype), nn.tanh,
                          torch_dense(1, fan_in=hidden, param_dtype=param_dtype, use_bias=False)])


def _hidden_units(n_sites: int, alpha: float) -> int:
    hidden = int(alpha * n_sites)
    if n_sites < 1 or hidden < 1:
        raise ValueError(
            f"alpha * n_sites must give at least one hidden unit, got alpha={alpha}, "
            f"n_sites={n_sites}."
        )
    return hidden
