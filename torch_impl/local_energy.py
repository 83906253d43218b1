"""Local energies E_loc(s) = sum_s' H[s, s'] psi(s') / psi(s), from the Hamiltonian's tables.

The Hamiltonian is any object with the numpy tables of
``twins.hamiltonians.SpinHamiltonian`` (``zz_edges``, ``zz_coeff``,
``flip_sign``, ``mel_const``, ``mel_zz``, ``mel_zz_sites``); no dense matrix
is built. H is real symmetric, so H[s, s'_m] equals the table's matrix element
H[s'_m, s].
"""

import numpy as np
import torch


def _table(array, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    # The tables are read-only numpy arrays; torch wants a writable buffer, so copy.
    return torch.tensor(np.array(array), dtype=dtype or like.dtype, device=like.device)


def diagonal(hamiltonian, s: torch.Tensor) -> torch.Tensor:
    """Return H[s, s] = sum_e zz_coeff[e] s_i s_j for ``s`` (B, N), shape (B,)."""
    edges = _table(hamiltonian.zz_edges, s, torch.long)
    return (s[:, edges[:, 0]] * s[:, edges[:, 1]]) @ _table(hamiltonian.zz_coeff, s)


def connected(hamiltonian, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return s'_m = s with term m's sites flipped (B, M, N) and H[s'_m, s] (B, M)."""
    s_conn = s[:, None, :] * _table(hamiltonian.flip_sign, s)[None, :, :]
    sites = _table(hamiltonian.mel_zz_sites, s, torch.long)
    pairs = s[:, sites[:, 0]] * s[:, sites[:, 1]]
    mel = _table(hamiltonian.mel_const, s) + _table(hamiltonian.mel_zz, s) * pairs
    return s_conn, mel


@torch.no_grad()
def local_energy(log_psi, hamiltonian, s: torch.Tensor) -> torch.Tensor:
    """Return E_loc(s), shape (B,), for configurations ``s`` (B, N).

    ``log_psi`` maps (B', N) to log psi (B',), e.g. an ``NeuralQuantumState``.
    The result is complex when log psi is complex. It is computed without
    autograd: the VMC gradient treats E_loc as a constant. Terms with a zero
    matrix element are masked before the exponential, so a huge psi ratio
    cannot turn 0 * inf into NaN.
    """
    s_conn, mel = connected(hamiltonian, s)
    batch, n_terms, n_sites = s_conn.shape
    log_psi_s = log_psi(s)
    log_psi_conn = log_psi(s_conn.reshape(batch * n_terms, n_sites)).reshape(batch, n_terms)
    acting = mel != 0
    log_ratio = torch.where(acting, log_psi_conn - log_psi_s[:, None], 0.0)
    off_diagonal = torch.where(acting, mel * torch.exp(log_ratio), 0.0).sum(dim=1)
    return diagonal(hamiltonian, s) + off_diagonal
