"""A faster torch VMC + SR iteration, built from the torch twin's functions.

The torch twin's ``vmc.step`` forms the P x P matrix S from a complex O,
checks its condition number from its eigenvalues, and solves with a general
LU. This module keeps the twin's sampler, local energy and per-sample
gradients and changes the SR solve the way ``benchmarks.fused_vmc`` does on
the JAX side, for real parameters and a real log psi only: O is kept real, and the system is solved by Cholesky in
the smaller of parameter space (P x P) and sample space (B x B, by the
push-through identity (X^T X + eps I)^-1 X^T v = X^T (X X^T + eps I)^-1 v).

Optionally ``torch.compile`` compiles the sampler's proposal step (all chains
flip one site) so that a sweep runs N compiled calls instead of N rounds of
eager ops; its compile time is reported apart by the harness.
"""

from __future__ import annotations

import torch

import torch_impl.local_energy
import torch_impl.sampler
import torch_impl.vmc
from torch_impl.ansatz import log_cosh


def sr_direction(o_matrix: torch.Tensor, e_loc: torch.Tensor, diag_shift: float) -> torch.Tensor:
    """Return (S + diag_shift I)^-1 F for a real O (B, P) and real E_loc (B,), uniform weights.

    Same value as ``torch_impl.vmc.sr_solve(sr_matrix(O, w), F, diag_shift)``
    with w = 1 / B, up to rounding.
    """
    n_samples, n_params = o_matrix.shape
    scale = n_samples ** 0.5
    x = (o_matrix - o_matrix.mean(dim=0)) / scale
    v = 2.0 * (e_loc - e_loc.mean()) / scale
    if n_params <= n_samples:
        shifted = x.T @ x + diag_shift * torch.eye(n_params, dtype=x.dtype, device=x.device)
        return torch.cholesky_solve((x.T @ v)[:, None], torch.linalg.cholesky(shifted))[:, 0]
    kernel = x @ x.T + diag_shift * torch.eye(n_samples, dtype=x.dtype, device=x.device)
    return x.T @ torch.cholesky_solve(v[:, None], torch.linalg.cholesky(kernel))[:, 0]


def real_jacobian(model: torch.nn.Module, s: torch.Tensor) -> torch.Tensor:
    """Return O (B, P) as a real matrix, for real parameters and a real log psi."""
    params = dict(model.named_parameters())
    if any(p.is_complex() for p in params.values()):
        raise ValueError("the fast iteration keeps O real and needs real parameters; "
                         "use torch_impl.vmc.step for complex ones")
    with torch.no_grad():
        if model(s[:1]).is_complex():
            raise ValueError("the fast iteration keeps O real and needs a real log psi; "
                             "use torch_impl.vmc.step for a complex one")
    derivatives = torch_impl.vmc.log_derivatives(model, s)
    return torch_impl.vmc.real_parameter_jacobian(derivatives, params).real


def rbm_proposal(s: torch.Tensor, theta: torch.Tensor, log_psi: torch.Tensor, flip: torch.Tensor,
                 uniform: torch.Tensor, columns: torch.Tensor, visible_bias: torch.Tensor):
    """Propose flipping site ``flip[c]`` of every chain c; return the updated state and accepts.

    The same update as ``torch_impl.sampler.sample_rbm``'s inner loop, as one
    function that ``torch.compile`` can turn into a single graph:
    theta (n_chains, H) changes by -2 s_i W_i on a flip of site i.
    """
    chains = torch.arange(s.shape[0], device=s.device)
    spin = s[chains, flip]
    proposal_theta = theta - 2 * spin[:, None] * columns[flip]
    log_ratio = (-2 * spin * visible_bias[flip]
                 + (log_cosh(proposal_theta) - log_cosh(theta)).sum(dim=1))
    accept = uniform < torch.exp(2 * log_ratio.to(torch.float64))
    s = s.clone()
    s[chains, flip] = torch.where(accept, -spin, spin)
    theta = torch.where(accept[:, None], proposal_theta, theta)
    log_psi = torch.where(accept, log_psi + log_ratio, log_psi)
    return s, theta, log_psi, accept.sum()


def sample_rbm(propose, weight, hidden_bias, visible_bias, s, sites, uniforms, n_discard: int,
               n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``sample_rbm``'s sweeps with ``propose`` (eager or compiled ``rbm_proposal``).

    Returns ``(samples (n_chains * n_samples, N), last (n_chains, N))``. Unlike
    the twin, the accepted count stays on the device (no host read per
    proposal).
    """
    columns = weight.T.contiguous()
    recorded = []
    for t in range(n_discard + n_samples):
        theta = s @ weight.T + hidden_bias
        log_psi = s @ visible_bias + log_cosh(theta).sum(dim=1)
        for k in range(s.shape[1]):
            s, theta, log_psi, _ = propose(s, theta, log_psi, sites[t, k], uniforms[t, k],
                                           columns, visible_bias)
        if t >= n_discard:
            recorded.append(s)
    samples = torch.stack(recorded, dim=1).reshape(-1, s.shape[1])
    return samples, s


def make_iteration(model, hamiltonian, optimizer, generator: torch.Generator, *, n_chains: int,
                   samples_per_chain: int, n_discard: int, diag_shift: float,
                   compiled_proposal: bool):
    """Return ``iteration(s) -> s``: sample, estimate, SR solve and one optimizer step."""
    n_sites = model.n_sites
    propose = rbm_proposal
    if compiled_proposal:
        propose = torch.compile(rbm_proposal, fullgraph=True, dynamic=False)

    def iteration(s: torch.Tensor) -> torch.Tensor:
        sites, uniforms = torch_impl.sampler.draw_proposals(
            generator, n_discard + samples_per_chain, n_sites, n_chains)
        sites, uniforms = sites.to(s.device), uniforms.to(s.device)
        with torch.no_grad():
            weight, hidden_bias, visible_bias = torch_impl.sampler.rbm_arrays(model)
            samples, s = sample_rbm(propose, weight, hidden_bias, visible_bias, s, sites,
                                    uniforms, n_discard, samples_per_chain)
        e_loc = torch_impl.local_energy.local_energy(model, hamiltonian, samples)
        direction = sr_direction(real_jacobian(model, samples), e_loc, diag_shift)
        params = dict(model.named_parameters())
        for name, value in torch_impl.vmc.unflatten_direction(direction, params).items():
            params[name].grad = value
        optimizer.step()
        return s

    return iteration
