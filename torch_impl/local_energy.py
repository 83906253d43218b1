"""Local energies E_loc(s) = sum_s' H[s, s'] psi(s') / psi(s), from the Hamiltonian's tables.

The Hamiltonian is any object with the numpy tables of
``twins.hamiltonians.SpinHamiltonian`` (``zz_edges``, ``zz_coeff``,
``flip_sign``, ``mel_const``, ``mel_zz``, ``mel_zz_sites``); no dense matrix
is built. H is real symmetric, so H[s, s'_m] equals the table's matrix element
H[s'_m, s].

``local_energy`` evaluates the model on every connected configuration, for any
ansatz, and is the parity reference. ``rbm_local_energy`` gets the same values
for ``ansatz.RBM`` from its hidden pre-activations, the way ``sampler.sample_rbm``
gets acceptance ratios; ``model_local_energy`` picks it for an RBM.
"""

import numpy as np
import torch
from torch import nn

from torch_impl.ansatz import RBM
from torch_impl.sampler import flip_factors, rbm_arrays, rbm_log_psi, use_flip_ratio


def _table(array, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    # The tables are read-only numpy arrays; torch wants a writable buffer, so copy.
    return torch.as_tensor(np.array(array), dtype=dtype or like.dtype, device=like.device)


def diagonal(hamiltonian, s: torch.Tensor) -> torch.Tensor:
    """Return H[s, s] = sum_e zz_coeff[e] s_i s_j for ``s`` (B, N), shape (B,)."""
    edges = _table(hamiltonian.zz_edges, s, torch.long)
    return (s[:, edges[:, 0]] * s[:, edges[:, 1]]) @ _table(hamiltonian.zz_coeff, s)


def matrix_elements(hamiltonian, s: torch.Tensor) -> torch.Tensor:
    """Return H[s'_m, s] (B, M), where s'_m is ``s`` with term m's sites flipped."""
    sites = _table(hamiltonian.mel_zz_sites, s, torch.long)
    pairs = s[:, sites[:, 0]] * s[:, sites[:, 1]]
    return _table(hamiltonian.mel_const, s) + _table(hamiltonian.mel_zz, s) * pairs


def connected(hamiltonian, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return s'_m = s with term m's sites flipped (B, M, N) and H[s'_m, s] (B, M)."""
    s_conn = s[:, None, :] * _table(hamiltonian.flip_sign, s)[None, :, :]
    return s_conn, matrix_elements(hamiltonian, s)


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
    return _sum_terms(hamiltonian, s, mel, log_psi_conn - log_psi_s[:, None])


def _sum_terms(hamiltonian, s, mel, log_ratio):
    """Return H[s, s] + sum_m mel[:, m] exp(log_ratio[:, m])."""
    acting = mel != 0
    log_ratio = torch.where(acting, log_ratio, 0.0)
    off_diagonal = torch.where(acting, mel * torch.exp(log_ratio), 0.0).sum(dim=1)
    return diagonal(hamiltonian, s) + off_diagonal


@torch.no_grad()
def rbm_local_energy(weight: torch.Tensor, hidden_bias: torch.Tensor, visible_bias: torch.Tensor,
                     hamiltonian, s: torch.Tensor) -> torch.Tensor:
    """Return ``local_energy`` of the RBM ``(weight, hidden_bias, visible_bias)``, shape (B,).

    The tensors are those of ``sampler.rbm_arrays``: W (H, N), b (H,), a (N,).
    When every term of the Hamiltonian flips one site and the weights pass
    ``sampler.use_flip_ratio``, flipping site i of ``s`` changes the RBM's
    amplitude by the factor

        psi(s') / psi(s) = exp(-2 a_i s_i) prod_j [cosh(2 W_ji) - s_i tanh(theta_j) sinh(2 W_ji)],

    with theta = s W^T + b (``sampler.flip_factors``; tanh(theta) is taken
    fresh here, not updated as in the sampler). One matmul for theta replaces
    the M forward passes over the connected configurations, and no
    transcendental function is evaluated per hidden unit. The product runs
    over the hidden units one at a time on (B, M) tensors, so the (B, M, H)
    tensor of every ratio is never formed. Other Hamiltonians and weights (or
    a complex RBM) take ``local_energy`` with the RBM's log psi.
    """
    s = s.to(weight.real.dtype)
    if hamiltonian.flip_sites.shape[1] != 1 or not use_flip_ratio(weight, hidden_bias):
        def log_psi(x):
            return rbm_log_psi(x, weight, hidden_bias, visible_bias)[1]

        return local_energy(log_psi, hamiltonian, s)

    site = _table(hamiltonian.flip_sites[:, 0], s, torch.long)  # (M,)
    spin = s[:, site]  # (B, M), the values before the flip
    # One hidden unit per row: (H, M) tables, (H, B) tanh(theta).
    cosh_2w, sinh_2w, _ = (table.T.contiguous() for table in flip_factors(weight.T[site]))
    tanh_theta = torch.tanh(s @ weight.T + hidden_bias).T.contiguous()
    product = torch.ones_like(spin)
    for j in range(weight.shape[0]):
        product *= torch.addcmul(cosh_2w[j], spin * tanh_theta[j, :, None], sinh_2w[j], value=-1)
    log_ratio = -2 * spin * visible_bias[site] + torch.log(product)
    return _sum_terms(hamiltonian, s, matrix_elements(hamiltonian, s), log_ratio)


def model_local_energy(model: nn.Module, hamiltonian, s: torch.Tensor) -> torch.Tensor:
    """Return E_loc(s) of ``model``.

    ``rbm_local_energy`` for an ``ansatz.RBM``, ``local_energy`` for any other model.
    """
    if isinstance(model, RBM):
        return rbm_local_energy(*rbm_arrays(model), hamiltonian, s)
    return local_energy(model, hamiltonian, s)
