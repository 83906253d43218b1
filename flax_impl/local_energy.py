"""Local energies E_loc(s) = sum_s' H[s, s'] psi(s') / psi(s), from the Hamiltonian's tables.

The Hamiltonian is any object with the numpy tables of
``twins.hamiltonians.SpinHamiltonian`` (``zz_edges``, ``zz_coeff``,
``flip_sign``, ``mel_const``, ``mel_zz``, ``mel_zz_sites``); no dense matrix
is built. H is real symmetric, so H[s, s'_m] equals the table's matrix element
H[s'_m, s]. The tables enter as constants, so these functions can be traced by
``jax.jit`` with the Hamiltonian closed over.

``local_energy`` evaluates the model on every connected configuration, for any
ansatz, and is the parity reference. ``rbm_local_energy`` gets the same values
for ``ansatz.RBM`` from its hidden pre-activations, the way ``sampler.sample_rbm``
gets acceptance ratios; ``model_local_energy`` picks it for an RBM.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from flax_impl.ansatz import RBM
from flax_impl.sampler import flip_factors, rbm_arrays, rbm_log_psi, use_flip_ratio


def diagonal(hamiltonian, s: jnp.ndarray) -> jnp.ndarray:
    """Return H[s, s] = sum_e zz_coeff[e] s_i s_j for ``s`` (B, N), shape (B,)."""
    edges = hamiltonian.zz_edges
    return (s[:, edges[:, 0]] * s[:, edges[:, 1]]) @ jnp.asarray(hamiltonian.zz_coeff, s.dtype)


def matrix_elements(hamiltonian, s: jnp.ndarray) -> jnp.ndarray:
    """Return H[s'_m, s] (B, M), where s'_m is ``s`` with term m's sites flipped."""
    sites = hamiltonian.mel_zz_sites
    pairs = s[:, sites[:, 0]] * s[:, sites[:, 1]]
    return (jnp.asarray(hamiltonian.mel_const, s.dtype)
            + jnp.asarray(hamiltonian.mel_zz, s.dtype) * pairs)


def connected(hamiltonian, s: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return s'_m = s with term m's sites flipped (B, M, N) and H[s'_m, s] (B, M)."""
    s_conn = s[:, None, :] * jnp.asarray(hamiltonian.flip_sign, s.dtype)[None, :, :]
    return s_conn, matrix_elements(hamiltonian, s)


def local_energy(log_psi, hamiltonian, s: jnp.ndarray) -> jnp.ndarray:
    """Return E_loc(s), shape (B,), for configurations ``s`` (B, N).

    ``log_psi`` maps (B', N) to log psi (B',), e.g.
    ``functools.partial(model.apply, variables)``. The result is complex when
    log psi is complex. It is wrapped in ``stop_gradient``: the VMC gradient
    treats E_loc as a constant (torch's twin runs under ``no_grad``). Terms
    with a zero matrix element are masked before the exponential, so a huge
    psi ratio cannot turn 0 * inf into NaN.
    """
    s_conn, mel = connected(hamiltonian, s)
    batch, n_terms, n_sites = s_conn.shape
    log_psi_s = log_psi(s)
    log_psi_conn = log_psi(s_conn.reshape(batch * n_terms, n_sites)).reshape(batch, n_terms)
    return _sum_terms(hamiltonian, s, mel, log_psi_conn - log_psi_s[:, None])


def _sum_terms(hamiltonian, s, mel, log_ratio):
    """Return H[s, s] + sum_m mel[:, m] exp(log_ratio[:, m]), as a constant for autodiff."""
    acting = mel != 0
    log_ratio = jnp.where(acting, log_ratio, 0.0)
    off_diagonal = jnp.where(acting, mel * jnp.exp(log_ratio), 0.0).sum(axis=1)
    return jax.lax.stop_gradient(diagonal(hamiltonian, s) + off_diagonal)


def rbm_local_energy(kernel: jax.Array, hidden_bias: jax.Array, visible_bias: jax.Array,
                     hamiltonian, s: jnp.ndarray) -> jnp.ndarray:
    """Return ``local_energy`` of the RBM ``(kernel, hidden_bias, visible_bias)``, shape (B,).

    The arrays are those of ``sampler.rbm_arrays``: W (N, H), b (H,), a (N,).
    When every term of the Hamiltonian flips one site and the weights pass
    ``sampler.use_flip_ratio``, flipping site i of ``s`` changes the RBM's
    amplitude by the factor

        psi(s') / psi(s) = exp(-2 a_i s_i) prod_j [cosh(2 W_ij) - s_i tanh(theta_j) sinh(2 W_ij)],

    with theta = s W + b (``sampler.flip_factors``; tanh(theta) is taken fresh
    here, not updated as in the sampler). One matmul for theta replaces the M
    forward passes over the connected configurations, and no transcendental
    function is evaluated per hidden unit. The product runs over the hidden
    units one at a time on (B, M) arrays, so the (B, M, H) array of every
    ratio is never formed. Other Hamiltonians and weights (or a complex RBM)
    take ``local_energy`` with the RBM's log psi.
    """
    def log_psi(x):
        return rbm_log_psi(x, kernel, hidden_bias, visible_bias)[1]

    s = s.astype(jnp.finfo(kernel.dtype).dtype)  # the real dtype of the parameters

    def plain():
        return local_energy(log_psi, hamiltonian, s)

    def flip_ratio():
        site = jnp.asarray(hamiltonian.flip_sites[:, 0])  # (M,)
        spin = s[:, site]  # (B, M), the values before the flip
        # One hidden unit per row: (H, M) tables, (H, B) tanh(theta).
        cosh_2w, sinh_2w, _ = (table.T for table in flip_factors(kernel[site]))
        tanh_theta = jnp.tanh(s @ kernel + hidden_bias).T

        def multiply(j, product):
            return product * (cosh_2w[j] - spin * tanh_theta[j][:, None] * sinh_2w[j])

        product = lax.fori_loop(0, kernel.shape[1], multiply, jnp.ones(spin.shape, kernel.dtype))
        log_ratio = -2 * spin * visible_bias[site] + jnp.log(product)
        return _sum_terms(hamiltonian, s, matrix_elements(hamiltonian, s), log_ratio)

    if jnp.iscomplexobj(kernel) or hamiltonian.flip_sites.shape[1] != 1:
        return plain()
    return lax.cond(use_flip_ratio(kernel, hidden_bias), flip_ratio, plain)


def model_local_energy(model: nn.Module, params, hamiltonian, s: jnp.ndarray) -> jnp.ndarray:
    """Return E_loc(s) of ``model`` with ``params``.

    ``rbm_local_energy`` for an ``ansatz.RBM``, ``local_energy`` for any other model.
    """
    if isinstance(model, RBM):
        return rbm_local_energy(*rbm_arrays({"params": params}), hamiltonian, s)
    return local_energy(lambda x: model.apply({"params": params}, x), hamiltonian, s)
