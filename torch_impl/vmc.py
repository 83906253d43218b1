"""Variational Monte Carlo with autograd and torch.optim: estimators, gradient, SR.

An estimate averages over configurations s (B, N) with weights p (B,) that sum
to 1: |psi|^2 / sum |psi|^2 for the exact sum over all 2^N configurations,
1 / B for Monte Carlo samples.

    O_k(s)  = d log psi(s) / d theta_k
    E       = <E_loc>,  F = 2 Re <conj(O) (E_loc - E)>
    S       = Re <conj(O - <O>)^T (O - <O>)>,  SR direction = (S + eps I)^-1 F

Complex parameters: a complex z = x + i y counts as the two real parameters
(x, y). The update direction is returned as dE/dx + i dE/dy, the convention of
torch's ``.grad``, so it can be assigned to ``.grad`` and stepped by any
``torch.optim`` optimizer (which treats real and imaginary parts as separate
parameters, ``torch.view_as_real``).
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from torch_impl.local_energy import model_local_energy

# The exact estimator keeps the connected configurations (2^N x M x N) and the
# log-derivatives (2^N x P) in memory: about 0.5 GB for an N = 16 RBM with
# alpha = 1, 16 times that per extra 4 sites.
MAX_EXACT_SITES = 16


class SingularMatrixWarning(RuntimeWarning):
    """The SR matrix S + shift is singular or too ill-conditioned to solve."""


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if _real_dtype(dtype) == torch.float64 else torch.complex64


def all_configurations(n_sites: int, dtype: torch.dtype = torch.float64,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Return every configuration of ``n_sites`` spins, shape (2^N, N), on ``device``.

    Row b is basis index b: row 0 is all +1 and site 0 is the most significant bit.
    """
    _check_exact_size(n_sites, n_sites * 8)
    index = torch.arange(2**n_sites, dtype=torch.int64, device=device)
    shifts = torch.arange(n_sites - 1, -1, -1, dtype=torch.int64, device=device)
    bits = (index[:, None] >> shifts[None, :]) & 1
    return (1 - 2 * bits).to(dtype)


def exact_weights(log_psi: torch.Tensor) -> torch.Tensor:
    """Return p = |psi|^2 / sum |psi|^2 from log psi (B,), computed as softmax(2 Re log psi)."""
    return torch.softmax(2.0 * log_psi.real, dim=0)


def log_derivatives(model: nn.Module, s: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return O(s) = d log psi(s) / d theta per parameter, each (B, *shape), complex.

    Per-sample gradients through ``torch.func.vmap(grad(...))``. A real
    parameter gets d Re log psi + i d Im log psi. For a complex parameter
    ``grad`` of Re log psi returns conj(d log psi / dz) (torch's convention
    for a real function of z, log psi being holomorphic in z), so it is
    conjugated back.
    """
    params = {name: p.detach() for name, p in model.named_parameters()}
    complex_dtype = _complex_dtype(next(iter(params.values())).dtype)

    def part(params, x, take):
        return take(functional_call(model, params, (x[None],))[0])

    per_sample = vmap(grad(part), in_dims=(None, 0, None))
    real = per_sample(params, s, torch.real)
    imag = None
    with torch.no_grad():
        output_is_complex = model(s[:1]).is_complex()
    if output_is_complex and any(not p.is_complex() for p in params.values()):
        imag = per_sample(params, s, torch.imag)

    derivatives = {}
    for name, p in params.items():
        if p.is_complex():
            derivatives[name] = real[name].conj().resolve_conj()
        elif imag is not None:
            derivatives[name] = torch.complex(real[name], imag[name])
        else:
            derivatives[name] = real[name].to(complex_dtype)
    return derivatives


def real_jacobian(model: nn.Module, s: torch.Tensor) -> torch.Tensor:
    """Return O (B, P) for a real log psi over real parameters, as a real matrix.

    The same columns as ``real_parameter_jacobian(log_derivatives(...))``,
    without the complex intermediate: for such a model O is real, and the
    complex (B, P) array would double the memory traffic of the largest
    array of the estimate.
    """
    params = {name: p.detach() for name, p in model.named_parameters()}

    def single(params, x):
        return functional_call(model, params, (x[None],))[0]

    derivatives = vmap(grad(single), in_dims=(None, 0))(params, s)
    return torch.cat([derivatives[name].reshape(len(s), -1) for name in params], dim=1)


def real_parameter_jacobian(derivatives: dict, params: dict) -> torch.Tensor:
    """Return O as a complex matrix (B, P) over the real parameters.

    Leaves are taken in the order of ``params``. A real leaf contributes its
    O; a complex leaf z = x + i y contributes, per entry, the columns
    d log psi / dx = O and d log psi / dy = i O, interleaved (x, y) as
    ``torch.view_as_real`` lays them out.
    """
    columns = []
    for name, value in params.items():
        o = derivatives[name].reshape(derivatives[name].shape[0], -1)
        if value.is_complex():
            o = torch.stack([o, 1j * o], dim=-1).reshape(o.shape[0], -1)
        columns.append(o)
    return torch.cat(columns, dim=1)


def energy_and_gradient(o_matrix: torch.Tensor, e_loc: torch.Tensor, weights: torch.Tensor):
    """Return <E_loc>, its variance <|E_loc - E|^2> and F = 2 Re <conj(O) (E_loc - E)> (P,)."""
    energy = torch.sum(weights * e_loc)
    centred = e_loc - energy
    variance = torch.sum(weights * centred.abs() ** 2)
    gradient = 2.0 * _real_inner(o_matrix, weights[:, None] * centred[:, None])[:, 0]
    return energy.real, variance, gradient


def sr_matrix(o_matrix: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Return S = Re <conj(O - <O>)^T (O - <O>)>, real symmetric (P, P)."""
    centred = o_matrix - torch.sum(weights[:, None] * o_matrix, dim=0)
    return _real_inner(centred, weights[:, None] * centred)


def _real_inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return Re(conj(a)^T b) for real or complex a (B, P) and b (B, K).

    Re(conj(a)^T b) = Re(a)^T Re(b) + Im(a)^T Im(b): two real products, half
    the work of the complex product whose imaginary part would be dropped.
    """
    if not b.is_complex():
        return a.real.T @ b
    if not a.is_complex():
        return a.T @ b.real
    return a.real.T @ b.real + a.imag.T @ b.imag


def sr_solve(s_matrix: torch.Tensor, gradient: torch.Tensor, diag_shift: float,
             max_condition: float | None = None) -> torch.Tensor:
    """Solve (S + diag_shift I) delta = F for the SR direction delta (P,).

    S has rank at most B - 1 for B samples, so it is singular whenever there
    are fewer samples than parameters. A non-positive ``diag_shift`` raises
    ``ValueError``. If S + shift is still too ill-conditioned for the dtype
    (condition number above ``max_condition``, default 1 / (1000 eps)), a
    ``SingularMatrixWarning`` is issued and the least-squares solution
    (``torch.linalg.lstsq``) is returned.
    """
    return _shifted_solve(s_matrix, gradient, diag_shift, max_condition, "S")


def sr_factors(o_matrix: torch.Tensor, e_loc: torch.Tensor,
               weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a real Y (R, P) and z (R,) with S = Y^T Y and F = 2 Y^T z.

    Y = sqrt(p) (O - <O>) and z = sqrt(p) (E_loc - E), row by row. A complex
    O stacks its real part over its imaginary part (R = 2B), since
    Re(conj(a) b) = Re a Re b + Im a Im b; a real O keeps R = B.
    """
    root = weights.sqrt()
    # weights @ O gives <O> without a (B, P) temporary, and the in-place
    # scaling reuses the centred copy: each fresh (B, P) array costs a pass.
    y = (o_matrix - weights.to(o_matrix.dtype) @ o_matrix).mul_(root[:, None])
    z = root * (e_loc - torch.sum(weights * e_loc))
    if y.is_complex():
        y = torch.cat([y.real, y.imag])
        z = torch.cat([z.real, z.imag]) if z.is_complex() else torch.cat([z, torch.zeros_like(z)])
    return y, z.real


def sr_direction(o_matrix: torch.Tensor, e_loc: torch.Tensor, weights: torch.Tensor,
                 diag_shift: float, max_condition: float | None = None) -> torch.Tensor:
    """Return the SR direction (S + diag_shift I)^-1 F (P,) without forming S when P > R.

    Same value as ``sr_solve(sr_matrix(O, p), F, diag_shift)``, up to
    rounding. With S = Y^T Y and F = 2 Y^T z (``sr_factors``), the
    push-through identity (Y^T Y + eps I)^-1 Y^T = Y^T (Y Y^T + eps I)^-1
    turns the P x P system into an R x R one:

        delta = Y^T (Y Y^T + eps I)^-1 2 z,

    the cheaper one when there are more parameters P than rows R (B samples,
    2B for a complex O). The conditioning check and the least-squares
    fallback are those of ``sr_solve``, applied to the system solved.
    """
    sample_space = _sample_space(o_matrix)
    _check_diag_shift(diag_shift)
    # One pass forms the system and tries the Cholesky solve, then the host
    # reads the trace and the factorisation status once. Only a rejected
    # attempt pays for the checked solve.
    matrix, rhs, y, direction, trace, info = _sr_attempt(o_matrix, e_loc, weights, diag_shift,
                                                         sample_space)
    if _cholesky_trusted(trace, info, diag_shift, max_condition, o_matrix.dtype):
        return direction
    matrix = _symmetric(matrix)
    if not sample_space:
        return _shifted_solve(matrix, rhs, diag_shift, max_condition, "S")
    return y.T @ _shifted_solve(matrix, rhs, diag_shift, max_condition, "Y Y^T")


def _sample_space(o_matrix: torch.Tensor) -> bool:
    """Return whether ``sr_direction`` solves in sample space: more parameters than rows of Y."""
    rows = o_matrix.shape[0] * (2 if o_matrix.is_complex() else 1)
    return o_matrix.shape[1] > rows


def _sr_system(o_matrix, e_loc, weights, sample_space: bool):
    """Return (Y Y^T, 2 z, Y) in sample space, else (Y^T Y, 2 Y^T z, None).

    The system matrix comes from ``_lower_gram``: only its lower triangle is
    right, and that is the part Cholesky reads. ``_symmetric`` gives the full matrix.
    """
    y, z = sr_factors(o_matrix, e_loc, weights)
    if sample_space:
        return _lower_gram(y.T), 2 * z, y
    return _lower_gram(y), 2 * (y.T @ z), None


# Block rows of ``_lower_gram``: block row i of a 4-row split multiplies i + 1
# of the 4 block columns, 10 of the 16 block products, 5/8 of the
# multiply-adds of a^T a.
GRAM_BLOCKS = 4


def _lower_gram(a: torch.Tensor) -> torch.Tensor:
    """Return a (K, K) matrix whose lower triangle is that of a^T a, for a real a (R, K).

    a^T a is symmetric, and BLAS would form half of it (syrk), but torch has
    only the general product. So each block row of the result is multiplied
    up to the end of its diagonal block, and the blocks above stay zero.
    Slices are views in torch, so a block row takes its columns of ``a``
    against all columns up to that end, with no copy. The Flax twin
    multiplies single blocks instead, because an XLA slice is a copy.
    """
    size = a.shape[1]
    edges = np.linspace(0, size, min(GRAM_BLOCKS, size) + 1).astype(int).tolist()
    lower = a.new_zeros((size, size))
    for start, stop in zip(edges[:-1], edges[1:]):
        lower[start:stop, :stop] = a[:, start:stop].T @ a[:, :stop]
    return lower


def _symmetric(lower: torch.Tensor) -> torch.Tensor:
    """Return the symmetric matrix whose lower triangle is ``lower``'s."""
    return torch.tril(lower) + torch.tril(lower, -1).T


def _sr_attempt(o_matrix, e_loc, weights, diag_shift: float, sample_space: bool):
    """Return ``_sr_system``'s tensors, the Cholesky direction and ``_cholesky_attempt``'s checks."""
    matrix, rhs, y = _sr_system(o_matrix, e_loc, weights, sample_space)
    solution, trace, info = _cholesky_attempt(matrix, rhs, diag_shift)
    direction = y.T @ solution if sample_space else solution
    return matrix, rhs, y, direction, trace, info


def _check_diag_shift(diag_shift: float) -> None:
    if not diag_shift > 0:
        raise ValueError(
            f"diag_shift must be positive, got {diag_shift!r}: S = Re cov(O) has rank at "
            f"most n_samples - 1 and is singular without a shift. Use e.g. diag_shift=0.01."
        )


def _cholesky_trusted(trace: torch.Tensor, info: torch.Tensor, diag_shift: float,
                      max_condition: float | None, dtype: torch.dtype) -> bool:
    """Return whether a Cholesky solution with these checks may be returned unchecked.

    The system matrix is a Gram matrix, so positive semidefinite: the
    eigenvalues of matrix + shift lie in [shift, shift + trace]. When that
    bound already meets ``max_condition`` the eigenvalue computation, which
    costs several times the solve, is skipped. ``info`` is
    ``cholesky_ex``'s status, 0 when the factorisation succeeded. Both are
    tensors, or the numbers already read from them.
    """
    if max_condition is None:
        max_condition = _default_max_condition(dtype)
    if isinstance(trace, torch.Tensor):
        # One host read for both values: on a GPU each read waits for the queue.
        trace, info = torch.stack([trace, info.to(trace.dtype)]).tolist()
    return info == 0 and (diag_shift + trace) / diag_shift <= max_condition


def _default_max_condition(dtype: torch.dtype) -> float:
    return 1.0 / (1000.0 * torch.finfo(dtype).eps)


def _shifted_solve(matrix: torch.Tensor, rhs: torch.Tensor, diag_shift: float,
                   max_condition: float | None, name: str) -> torch.Tensor:
    """Solve (matrix + diag_shift I) x = rhs for a positive semidefinite ``matrix``."""
    _check_diag_shift(diag_shift)
    if max_condition is None:
        max_condition = _default_max_condition(matrix.dtype)
    solution, trace, info = _cholesky_attempt(matrix, rhs, diag_shift)
    if _cholesky_trusted(trace, info, diag_shift, max_condition, matrix.dtype):
        return solution
    shifted = _shifted(matrix, diag_shift)
    # The shifted matrix is symmetric, so its condition number is the ratio of
    # extreme eigenvalues (cheaper than the SVD behind linalg.cond).
    eigenvalues = torch.linalg.eigvalsh(shifted)
    smallest, largest = eigenvalues[0].item(), eigenvalues[-1].item()
    condition = largest / smallest if smallest > 0 else math.inf
    if not condition <= max_condition:
        warnings.warn(
            f"{name} + {diag_shift:g} I has condition number {condition:.3g} > "
            f"{max_condition:.3g}; returning the least-squares solution. Increase diag_shift.",
            SingularMatrixWarning, stacklevel=3,
        )
        return torch.linalg.lstsq(shifted, rhs[:, None]).solution[:, 0]
    return torch.linalg.solve(shifted, rhs)


def _shifted(matrix: torch.Tensor, diag_shift: float) -> torch.Tensor:
    return matrix + diag_shift * torch.eye(len(matrix), dtype=matrix.dtype, device=matrix.device)


def _cholesky_attempt(matrix: torch.Tensor, rhs: torch.Tensor, diag_shift: float):
    """Return x with (matrix + shift I) x = rhs by Cholesky, trace(matrix) and the factor's status.

    The status is ``cholesky_ex``'s ``info``, 0 when the factorisation succeeded.
    Only the lower triangle of ``matrix`` is read.
    """
    factor, info = torch.linalg.cholesky_ex(_shifted(matrix, diag_shift))
    return torch.cholesky_solve(rhs[:, None], factor)[:, 0], torch.trace(matrix), info


def unflatten_direction(direction: torch.Tensor, params: dict) -> dict[str, torch.Tensor]:
    """Split a real vector (P,) into tensors shaped like ``params``.

    A complex leaf takes two consecutive entries (x, y) per element and gets
    x + i y, the layout of ``torch.view_as_real``.
    """
    leaves, offset = {}, 0
    for name, value in params.items():
        count = value.numel() * (2 if value.is_complex() else 1)
        chunk = direction[offset:offset + count]
        offset += count
        if value.is_complex():
            chunk = torch.view_as_complex(chunk.reshape(-1, 2).contiguous())
        leaves[name] = chunk.reshape(value.shape).to(value.dtype)
    if offset != len(direction):
        raise ValueError(f"direction has {len(direction)} entries but the parameters need {offset}.")
    return leaves


@dataclass
class Estimate:
    """One VMC estimate.

    Attributes:
        energy: <E_loc>, real part.
        variance: <|E_loc - energy|^2>.
        e_loc: E_loc per configuration (B,).
        gradient: F per parameter, dE/dx + i dE/dy for complex ones.
        direction: the update direction per parameter: ``gradient``, or the SR
            direction when a diagonal shift was given.
    """

    energy: float
    variance: float
    e_loc: torch.Tensor
    gradient: dict[str, torch.Tensor]
    direction: dict[str, torch.Tensor]


def estimate(model: nn.Module, hamiltonian, s: torch.Tensor, weights: torch.Tensor | None = None,
             diag_shift: float | None = None, compile: bool = False) -> Estimate:
    """Return the energy and update direction from configurations ``s`` (B, N).

    ``weights`` (B,) default to 1 / B (Monte Carlo samples). With
    ``diag_shift`` the direction is the SR direction (S + diag_shift I)^-1 F,
    otherwise F itself. ``compile=True`` runs the statistics (``_statistics``)
    through ``torch.compile``, where eager mode dispatches every op of the
    local energy and of the vmapped gradient; the first call per model,
    Hamiltonian and batch shape compiles.
    """
    params = dict(model.named_parameters())
    s = s.to(_real_dtype(next(iter(params.values())).dtype))
    if weights is None:
        weights = torch.full((len(s),), 1.0 / len(s), dtype=s.dtype, device=s.device)

    with_sr = diag_shift is not None
    if with_sr:
        _check_diag_shift(diag_shift)
    statistics = _compiled_statistics() if compile else _statistics
    e_loc, o_matrix, gradient, direction, checks = statistics(
        model, hamiltonian, s, weights, diag_shift, _is_real_model(model, params, s), with_sr)
    # One host read for every scalar: on a GPU each read waits for the queue.
    energy, variance, *attempt_checks = checks.tolist()

    if with_sr and not _cholesky_trusted(*attempt_checks, diag_shift, None, o_matrix.dtype):
        direction = sr_direction(o_matrix, e_loc, weights, diag_shift)
    return Estimate(energy, variance, e_loc,
                    unflatten_direction(gradient, params), unflatten_direction(direction, params))


def _statistics(model, hamiltonian, s, weights, diag_shift, real_model: bool, with_sr: bool):
    """Return E_loc, O, F, the direction and the host's checks.

    The direction is F, or ``with_sr`` the SR attempt of ``_sr_attempt``. The
    checks are one tensor, (energy, variance) and ``with_sr`` the attempt's
    (trace, info): the host reads it once, then checks the attempt and
    falls back to ``sr_direction`` if needed. F and the direction stay flat,
    and the caller splits them into per-parameter views.
    """
    e_loc = model_local_energy(model, hamiltonian, s)
    if real_model:
        # O of a real log psi over real parameters is real: a real O halves
        # the work of every product below.
        o_matrix = real_jacobian(model, s)
    else:
        o_matrix = real_parameter_jacobian(log_derivatives(model, s),
                                           dict(model.named_parameters()))
    energy, variance, gradient = energy_and_gradient(o_matrix, e_loc, weights)
    direction, checks = gradient, [energy, variance]
    if with_sr:
        _, _, _, direction, trace, info = _sr_attempt(o_matrix, e_loc, weights, diag_shift,
                                                      _sample_space(o_matrix))
        checks += [trace, info.to(trace.dtype)]
    return e_loc, o_matrix, gradient, direction, torch.stack(checks)


_COMPILED = []


def _compiled_statistics():
    """Return ``_statistics`` compiled, built once and reused across calls.

    Not ``fullgraph``: the local energy's choice of path reads the weights on
    the host, which splits the graph there.
    """
    if not _COMPILED:
        _COMPILED.append(torch.compile(_statistics, dynamic=False))
    return _COMPILED[0]


def _is_real_model(model: nn.Module, params: dict, s: torch.Tensor) -> bool:
    if any(p.is_complex() for p in params.values()):
        return False
    with torch.no_grad():
        return not model(s[:1]).is_complex()


def exact_estimate(model: nn.Module, hamiltonian, diag_shift: float | None = None,
                   compile: bool = False) -> Estimate:
    """Return the estimate from the exact sum over all 2^N configurations.

    ``compile`` is ``estimate``'s.
    """
    n_sites = hamiltonian.n_sites
    n_params = sum(p.numel() for p in model.parameters())
    _check_exact_size(n_sites, _exact_bytes_per_configuration(n_sites, hamiltonian.n_terms, n_params))
    first = next(model.parameters())
    s = all_configurations(n_sites, _real_dtype(first.dtype), first.device)
    with torch.no_grad():
        weights = exact_weights(model(s))
    return estimate(model, hamiltonian, s, weights, diag_shift, compile)


def step(model: nn.Module, optimizer: torch.optim.Optimizer, hamiltonian,
         s: torch.Tensor | None = None, weights: torch.Tensor | None = None,
         diag_shift: float | None = None, compile: bool = False) -> Estimate:
    """Run one optimizer step along the VMC direction and return the estimate before it.

    ``s=None`` uses the exact sum over all configurations. The direction is
    written to ``.grad`` (dE/dx + i dE/dy for complex parameters, which is
    what torch.optim expects) and ``optimizer.step()`` applies it.
    ``compile`` is ``estimate``'s.
    """
    if s is None:
        result = exact_estimate(model, hamiltonian, diag_shift, compile)
    else:
        result = estimate(model, hamiltonian, s, weights, diag_shift, compile)
    for name, p in model.named_parameters():
        p.grad = result.direction[name]
    optimizer.step()
    return result


@dataclass
class Trajectory:
    """Energy before each step and every parameter after it, as numpy.

    ``energies`` has shape (steps,); ``params[name]`` has shape (steps, *shape).
    """

    energies: np.ndarray
    params: dict[str, np.ndarray]


def train_exact(model: nn.Module, optimizer: torch.optim.Optimizer, hamiltonian, steps: int,
                diag_shift: float | None = None) -> Trajectory:
    """Run ``steps`` exact-estimator steps of ``optimizer`` and record the trajectory."""
    energies = []
    history = {name: [] for name, _ in model.named_parameters()}
    for _ in range(steps):
        energies.append(step(model, optimizer, hamiltonian, diag_shift=diag_shift).energy)
        for name, p in model.named_parameters():
            history[name].append(p.detach().cpu().numpy().copy())
    return Trajectory(np.asarray(energies), {k: np.stack(v) for k, v in history.items()})


def _check_exact_size(n_sites: int, bytes_per_configuration: float) -> None:
    if n_sites <= MAX_EXACT_SITES:
        return
    size = 2.0**n_sites * bytes_per_configuration
    raise ValueError(
        f"the exact sum over all 2^{n_sites} configurations of {n_sites} sites needs about "
        f"{size / 2**30:.1f} GiB, and the limit is {MAX_EXACT_SITES} sites; use Monte Carlo sampling."
    )


def _exact_bytes_per_configuration(n_sites: int, n_terms: int, n_params: int) -> float:
    # float64 connected configurations (M + 1 per configuration) and complex128 O.
    return n_sites * (n_terms + 1) * 8 + n_params * 16
