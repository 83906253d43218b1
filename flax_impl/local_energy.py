"""Local energies E_loc(s) = sum_s' H[s, s'] psi(s') / psi(s), from the Hamiltonian's tables.

The Hamiltonian is any object with the numpy tables of
``twins.hamiltonians.SpinHamiltonian`` (``zz_edges``, ``zz_coeff``,
``flip_sign``, ``mel_const``, ``mel_zz``, ``mel_zz_sites``); no dense matrix
is built. H is real symmetric, so H[s, s'_m] equals the table's matrix element
H[s'_m, s]. The tables enter as constants, so these functions can be traced by
``jax.jit`` with the Hamiltonian closed over.
"""

import jax
import jax.numpy as jnp


def diagonal(hamiltonian, s: jnp.ndarray) -> jnp.ndarray:
    """Return H[s, s] = sum_e zz_coeff[e] s_i s_j for ``s`` (B, N), shape (B,)."""
    edges = hamiltonian.zz_edges
    return (s[:, edges[:, 0]] * s[:, edges[:, 1]]) @ jnp.asarray(hamiltonian.zz_coeff, s.dtype)


def connected(hamiltonian, s: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return s'_m = s with term m's sites flipped (B, M, N) and H[s'_m, s] (B, M)."""
    s_conn = s[:, None, :] * jnp.asarray(hamiltonian.flip_sign, s.dtype)[None, :, :]
    sites = hamiltonian.mel_zz_sites
    pairs = s[:, sites[:, 0]] * s[:, sites[:, 1]]
    mel = (jnp.asarray(hamiltonian.mel_const, s.dtype)
           + jnp.asarray(hamiltonian.mel_zz, s.dtype) * pairs)
    return s_conn, mel


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
    acting = mel != 0
    log_ratio = jnp.where(acting, log_psi_conn - log_psi_s[:, None], 0.0)
    off_diagonal = jnp.where(acting, mel * jnp.exp(log_ratio), 0.0).sum(axis=1)
    return jax.lax.stop_gradient(diagonal(hamiltonian, s) + off_diagonal)
