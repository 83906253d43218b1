"""Variational Monte Carlo with jax.grad and optax: estimators, gradient, SR.

An estimate averages over configurations s (B, N) with weights p (B,) that sum
to 1: |psi|^2 / sum |psi|^2 for the exact sum over all 2^N configurations,
1 / B for Monte Carlo samples.

    O_k(s)  = d log psi(s) / d theta_k
    E       = <E_loc>,  F = 2 Re <conj(O) (E_loc - E)>
    S       = Re <conj(O - <O>)^T (O - <O>)>,  SR direction = (S + eps I)^-1 F

Complex parameters: a complex z = x + i y counts as the two real parameters
(x, y). The update direction is returned as dE/dx + i dE/dy, the convention of
torch's ``.grad``. That is the conjugate of what ``jax.grad`` of the energy
would return, and ``optax.sgd`` steps it the right way. Adam-like optimizers keep one
second moment per complex entry in optax, whereas torch keeps one per real
component: wrap them in ``optax.contrib.split_real_and_imaginary`` to match
torch.
"""

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import optax
from flax import linen as nn

from flax_impl.local_energy import model_local_energy

# The exact estimator keeps the connected configurations (2^N x M x N) and the
# log-derivatives (2^N x P) in memory: about 0.5 GB for an N = 16 RBM with
# alpha = 1, 16 times that per extra 4 sites.
MAX_EXACT_SITES = 16


class SingularMatrixWarning(RuntimeWarning):
    """The SR matrix S + shift is singular or too ill-conditioned to solve."""


def _real_dtype(dtype) -> np.dtype:
    return np.zeros((), dtype=dtype).real.dtype


def _complex_dtype(dtype) -> np.dtype:
    return np.result_type(_real_dtype(dtype), np.complex64)


def all_configurations(n_sites: int, dtype=jnp.float64) -> jnp.ndarray:
    """Return every configuration of ``n_sites`` spins, shape (2^N, N).

    Row b is basis index b: row 0 is all +1 and site 0 is the most significant bit.
    """
    _check_exact_size(n_sites, n_sites * 8)
    return _enumerate(n_sites, np.dtype(dtype))


@functools.partial(jax.jit, static_argnames=("n_sites", "dtype"))
def _enumerate(n_sites, dtype):
    index = jnp.arange(2**n_sites, dtype=jnp.int64)
    shifts = jnp.arange(n_sites - 1, -1, -1, dtype=jnp.int64)
    bits = (index[:, None] >> shifts[None, :]) & 1
    return (1 - 2 * bits).astype(dtype)


def exact_weights(log_psi: jnp.ndarray) -> jnp.ndarray:
    """Return p = |psi|^2 / sum |psi|^2 from log psi (B,), computed as softmax(2 Re log psi)."""
    return jax.nn.softmax(2.0 * jnp.real(log_psi))


@functools.partial(jax.jit, static_argnames=("model",))
def log_derivatives(model: nn.Module, params, s: jnp.ndarray):
    """Return O(s) = d log psi(s) / d theta as a pytree like ``params``, leaves (B, *shape).

    Per-sample gradients through ``jax.vmap(jax.grad(...))``, compiled once per
    model and batch shape. A real parameter
    gets d Re log psi + i d Im log psi. For a complex parameter, ``jax.grad``
    of Re log psi already returns d log psi / dz, because log psi is
    holomorphic in z and JAX returns dL/dx - i dL/dy for a real L. torch's
    twin gets the conjugate there and conjugates it back.
    """
    complex_dtype = _complex_dtype(jax.tree_util.tree_leaves(params)[0].dtype)

    def per_sample(take):
        def part(params, x):
            return take(model.apply({"params": params}, x[None])[0])

        return jax.vmap(jax.grad(part), in_axes=(None, 0))(params, s)

    real = per_sample(jnp.real)
    output = jax.eval_shape(lambda: model.apply({"params": params}, s[:1]))
    leaves_complex = [jnp.iscomplexobj(p) for p in jax.tree_util.tree_leaves(params)]
    imag = None
    if jnp.issubdtype(output.dtype, jnp.complexfloating) and not all(leaves_complex):
        imag = per_sample(jnp.imag)

    def combine(p, real_part, imag_part):
        if jnp.iscomplexobj(p):
            return real_part
        if imag_part is not None:
            return jax.lax.complex(real_part, imag_part)
        return real_part.astype(complex_dtype)

    if imag is None:
        return jax.tree_util.tree_map(lambda p, r: combine(p, r, None), params, real)
    return jax.tree_util.tree_map(combine, params, real, imag)


@functools.partial(jax.jit, static_argnames=("model",))
def real_jacobian(model: nn.Module, params, s: jnp.ndarray) -> jnp.ndarray:
    """Return O (B, P) for a real log psi over real parameters, as a real matrix.

    The same columns as ``real_parameter_jacobian(log_derivatives(...))``,
    without the complex intermediate: for such a model O is real, and the
    complex (B, P) array would double the memory traffic of the largest
    array of the estimate.
    """
    def single(params, x):
        return model.apply({"params": params}, x[None])[0]

    derivatives = jax.vmap(jax.grad(single), in_axes=(None, 0))(params, s)
    return jnp.concatenate([o.reshape(o.shape[0], -1)
                            for o in jax.tree_util.tree_leaves(derivatives)], axis=1)


def real_parameter_jacobian(derivatives, params) -> jnp.ndarray:
    """Return O as a complex matrix (B, P) over the real parameters.

    Leaves are taken in ``jax.tree_util`` order (sorted keys, unlike torch's
    registration order). A real leaf contributes its O; a complex leaf
    z = x + i y contributes, per entry, the columns d log psi / dx = O and
    d log psi / dy = i O, interleaved (x, y).
    """
    columns = []
    for value, o in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(derivatives)):
        o = o.reshape(o.shape[0], -1)
        if jnp.iscomplexobj(value):
            o = jnp.stack([o, 1j * o], axis=-1).reshape(o.shape[0], -1)
        columns.append(o)
    return jnp.concatenate(columns, axis=1)


def energy_and_gradient(o_matrix: jnp.ndarray, e_loc: jnp.ndarray, weights: jnp.ndarray):
    """Return <E_loc>, its variance <|E_loc - E|^2> and F = 2 Re <conj(O) (E_loc - E)> (P,)."""
    energy = jnp.sum(weights * e_loc)
    centred = e_loc - energy
    variance = jnp.sum(weights * jnp.abs(centred) ** 2)
    gradient = 2.0 * _real_inner(o_matrix, weights[:, None] * centred[:, None])[:, 0]
    return jnp.real(energy), variance, gradient


def sr_matrix(o_matrix: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """Return S = Re <conj(O - <O>)^T (O - <O>)>, real symmetric (P, P)."""
    centred = o_matrix - jnp.sum(weights[:, None] * o_matrix, axis=0)
    return _real_inner(centred, weights[:, None] * centred)


def _real_inner(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Return Re(conj(a)^T b) for real or complex a (B, P) and b (B, K).

    Re(conj(a)^T b) = Re(a)^T Re(b) + Im(a)^T Im(b): two real products, half
    the work of the complex product whose imaginary part would be dropped.
    """
    if not jnp.iscomplexobj(b):
        return a.real.T @ b
    if not jnp.iscomplexobj(a):
        return a.T @ b.real
    return a.real.T @ b.real + a.imag.T @ b.imag


def sr_solve(s_matrix: jnp.ndarray, gradient: jnp.ndarray, diag_shift: float,
             max_condition: float | None = None) -> jnp.ndarray:
    """Solve (S + diag_shift I) delta = F for the SR direction delta (P,).

    S has rank at most B - 1 for B samples, so it is singular whenever there
    are fewer samples than parameters. A non-positive ``diag_shift`` raises
    ``ValueError``. If S + shift is still too ill-conditioned for the dtype
    (condition number above ``max_condition``, default 1 / (1000 eps)), a
    ``SingularMatrixWarning`` is issued and the least-squares solution
    (``jnp.linalg.lstsq``) is returned. The check reads the condition number
    on the host, so call this outside ``jax.jit``.
    """
    return _shifted_solve(s_matrix, gradient, diag_shift, max_condition, "S")


def sr_factors(o_matrix: jnp.ndarray, e_loc: jnp.ndarray,
               weights: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return a real Y (R, P) and z (R,) with S = Y^T Y and F = 2 Y^T z.

    Y = sqrt(p) (O - <O>) and z = sqrt(p) (E_loc - E), row by row. A complex
    O stacks its real part over its imaginary part (R = 2B), since
    Re(conj(a) b) = Re a Re b + Im a Im b; a real O keeps R = B.
    """
    root = jnp.sqrt(weights)
    y = root[:, None] * (o_matrix - jnp.sum(weights[:, None] * o_matrix, axis=0))
    z = root * (e_loc - jnp.sum(weights * e_loc))
    if jnp.iscomplexobj(y):
        y = jnp.concatenate([y.real, y.imag])
        z = jnp.concatenate([z.real, z.imag if jnp.iscomplexobj(z) else jnp.zeros_like(z)])
    return y, jnp.real(z)


def sr_direction(o_matrix: jnp.ndarray, e_loc: jnp.ndarray, weights: jnp.ndarray,
                 diag_shift: float, max_condition: float | None = None) -> jnp.ndarray:
    """Return the SR direction (S + diag_shift I)^-1 F (P,) without forming S when P > R.

    Same value as ``sr_solve(sr_matrix(O, p), F, diag_shift)``, up to
    rounding. With S = Y^T Y and F = 2 Y^T z (``sr_factors``), the
    push-through identity (Y^T Y + eps I)^-1 Y^T = Y^T (Y Y^T + eps I)^-1
    turns the P x P system into an R x R one:

        delta = Y^T (Y Y^T + eps I)^-1 2 z,

    the cheaper one when there are more parameters P than rows R (B samples,
    2B for a complex O). The conditioning check and the least-squares
    fallback are those of ``sr_solve``, applied to the system solved; call
    this outside ``jax.jit``.
    """
    sample_space = _sample_space(o_matrix)
    _check_diag_shift(diag_shift)
    # One compiled call forms the system and tries the Cholesky solve, then the
    # host reads the trace and the finiteness flag once. Only a rejected
    # attempt pays for the checked solve.
    matrix, rhs, y, direction, trace, finite = _sr_attempt(o_matrix, e_loc, weights, diag_shift,
                                                           sample_space)
    if _cholesky_trusted(trace, finite, diag_shift, max_condition, o_matrix.dtype):
        return direction
    matrix = _symmetric(matrix)
    if not sample_space:
        return _shifted_solve(matrix, rhs, diag_shift, max_condition, "S")
    return _times_transpose(y, _shifted_solve(matrix, rhs, diag_shift, max_condition, "Y Y^T"))


def _sample_space(o_matrix) -> bool:
    """Return whether ``sr_direction`` solves in sample space: more parameters than rows of Y."""
    rows = o_matrix.shape[0] * (2 if jnp.iscomplexobj(o_matrix) else 1)
    return o_matrix.shape[1] > rows


@functools.partial(jax.jit, static_argnames=("sample_space",))
def _sr_system(o_matrix, e_loc, weights, sample_space):
    """Return (Y Y^T, 2 z, Y) in sample space, else (Y^T Y, 2 Y^T z, None).

    The system matrix comes from ``_lower_gram``: only its lower triangle is
    right, and that is the part Cholesky reads. ``_symmetric`` gives the full matrix.
    """
    y, z = sr_factors(o_matrix, e_loc, weights)
    if sample_space:
        return _lower_gram(y.T), 2 * z, y
    return _lower_gram(y), 2 * (y.T @ z), None


# Block columns of ``_lower_gram``: the lower block triangle of a 4 x 4 split
# is 10 of the 16 block products, 5/8 of the multiply-adds of a^T a.
GRAM_BLOCKS = 4


def _lower_gram(a: jnp.ndarray) -> jnp.ndarray:
    """Return a (K, K) matrix whose lower triangle is that of a^T a, for a real a (R, K).

    a^T a is symmetric, and BLAS would form half of it (syrk), but XLA has
    only the general product. So the result is split into blocks and only
    the blocks on and below the diagonal are multiplied: the diagonal blocks
    in full, the blocks above them stay zero. A slice that feeds a matrix
    product is a copy in XLA, so each block column of ``a`` is sliced once,
    and XLA writes it straight from the fusion that computes ``a``. The
    products are joined by concatenation: setting them into a zero matrix one
    by one made XLA copy the whole matrix for each block.
    """
    size = a.shape[1]
    edges = np.linspace(0, size, min(GRAM_BLOCKS, size) + 1).astype(int)
    blocks = [a[:, start:stop] for start, stop in zip(edges[:-1], edges[1:])]
    block_rows = []
    for i, row in enumerate(blocks):
        products = [row.T @ column for column in blocks[:i + 1]]
        above = jnp.zeros((row.shape[1], size - edges[i + 1]), dtype=a.dtype)
        block_rows.append(jnp.concatenate(products + [above], axis=1))
    return jnp.concatenate(block_rows, axis=0)


@jax.jit
def _symmetric(lower: jnp.ndarray) -> jnp.ndarray:
    """Return the symmetric matrix whose lower triangle is ``lower``'s."""
    return jnp.tril(lower) + jnp.tril(lower, -1).T


@functools.partial(jax.jit, static_argnames=("sample_space",))
def _sr_attempt(o_matrix, e_loc, weights, diag_shift, sample_space):
    """Return ``_sr_system``'s arrays, the Cholesky direction and ``_cholesky_attempt``'s checks."""
    matrix, rhs, y = _sr_system(o_matrix, e_loc, weights, sample_space)
    solution, trace, finite = _cholesky_attempt(matrix, rhs, diag_shift)
    direction = y.T @ solution if sample_space else solution
    return matrix, rhs, y, direction, trace, finite


@jax.jit
def _times_transpose(y, x):
    return y.T @ x


def _check_diag_shift(diag_shift: float) -> None:
    if not diag_shift > 0:
        raise ValueError(
            f"diag_shift must be positive, got {diag_shift!r}: S = Re cov(O) has rank at "
            f"most n_samples - 1 and is singular without a shift. Use e.g. diag_shift=0.01."
        )


def _cholesky_trusted(trace, finite, diag_shift: float, max_condition: float | None,
                      dtype) -> bool:
    """Return whether a Cholesky solution with these checks may be returned unchecked.

    The system matrix is a Gram matrix, so positive semidefinite: the
    eigenvalues of matrix + shift lie in [shift, shift + trace]. When that
    bound already meets ``max_condition`` the eigenvalue computation, which
    costs several times the solve, is skipped. JAX's Cholesky fails with NaN,
    not an error, hence the finiteness flag.
    """
    if max_condition is None:
        max_condition = _default_max_condition(dtype)
    trace, finite = jax.device_get((trace, finite))
    return bool(finite) and (diag_shift + float(trace)) / diag_shift <= max_condition


def _default_max_condition(dtype) -> float:
    return 1.0 / (1000.0 * jnp.finfo(dtype).eps)


def _shifted_solve(matrix: jnp.ndarray, rhs: jnp.ndarray, diag_shift: float,
                   max_condition: float | None, name: str) -> jnp.ndarray:
    """Solve (matrix + diag_shift I) x = rhs for a positive semidefinite ``matrix``."""
    _check_diag_shift(diag_shift)
    if max_condition is None:
        max_condition = _default_max_condition(matrix.dtype)
    solution, trace, finite = _cholesky_attempt(matrix, rhs, diag_shift)
    if _cholesky_trusted(trace, finite, diag_shift, max_condition, matrix.dtype):
        return solution
    solution, smallest, largest = _eigen_checked_solve(matrix, rhs, diag_shift)
    smallest, largest = float(smallest), float(largest)
    condition = largest / smallest if smallest > 0 else math.inf
    if not condition <= max_condition:
        warnings.warn(
            f"{name} + {diag_shift:g} I has condition number {condition:.3g} > "
            f"{max_condition:.3g}; returning the least-squares solution. Increase diag_shift.",
            SingularMatrixWarning, stacklevel=3,
        )
        shifted = matrix + diag_shift * jnp.eye(len(matrix), dtype=matrix.dtype)
        return jnp.linalg.lstsq(shifted, rhs)[0]
    return solution


@jax.jit
def _cholesky_attempt(matrix, rhs, diag_shift):
    """Return x solving (matrix + shift I) x = rhs by Cholesky, trace(matrix) and whether x is finite.

    Only the lower triangle of ``matrix`` is read.
    """
    shifted = matrix + diag_shift * jnp.eye(len(matrix), dtype=matrix.dtype)
    solution = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(shifted, lower=True), rhs)
    return solution, jnp.trace(matrix), jnp.all(jnp.isfinite(solution))


@jax.jit
def _eigen_checked_solve(matrix, rhs, diag_shift):
    """Return the solution of (matrix + shift I) x = rhs and its extreme eigenvalues."""
    shifted = matrix + diag_shift * jnp.eye(len(matrix), dtype=matrix.dtype)
    # The shifted matrix is symmetric, so its condition number is the ratio of
    # extreme eigenvalues (cheaper than the SVD behind linalg.cond).
    eigenvalues = jnp.linalg.eigvalsh(shifted)
    return jnp.linalg.solve(shifted, rhs), eigenvalues[0], eigenvalues[-1]


def unflatten_direction(direction: jnp.ndarray, params):
    """Split a real vector (P,) into a pytree shaped like ``params``.

    A complex leaf takes two consecutive entries (x, y) per element and gets
    x + i y.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    pieces, offset = [], 0
    for value in leaves:
        count = value.size * (2 if jnp.iscomplexobj(value) else 1)
        chunk = direction[offset:offset + count]
        offset += count
        if jnp.iscomplexobj(value):
            chunk = jax.lax.complex(chunk[0::2], chunk[1::2])
        pieces.append(chunk.reshape(value.shape).astype(value.dtype))
    if offset != len(direction):
        raise ValueError(f"direction has {len(direction)} entries but the parameters need {offset}.")
    return jax.tree_util.tree_unflatten(treedef, pieces)


@dataclass
class Estimate:
    """One VMC estimate.

    Attributes:
        energy: <E_loc>, real part.
        variance: <|E_loc - energy|^2>.
        e_loc: E_loc per configuration (B,).
        gradient: F as a pytree like the params, dE/dx + i dE/dy for complex leaves.
        direction: the update direction as a pytree: ``gradient``, or the SR
            direction when a diagonal shift was given.
    """

    energy: float
    variance: float
    e_loc: jnp.ndarray
    gradient: Any
    direction: Any


@functools.partial(jax.jit, static_argnames=("model", "hamiltonian", "with_sr"))
def _statistics(model, hamiltonian, params, s, weights, diag_shift, with_sr):
    """Return E_loc, O, F, the direction and the host's checks, in one compiled call.

    ``weights=None`` means 1 / B. F and the direction come as pytrees like
    ``params``. The direction is F, or ``with_sr`` the SR attempt of
    ``_sr_attempt``. The checks are (energy, variance, trace, finite), the
    last two None without SR: the host reads them in one transfer, then
    checks the attempt and falls back to ``sr_direction`` if needed.
    """
    if weights is None:
        weights = jnp.full((len(s),), 1.0 / len(s), dtype=s.dtype)
    e_loc = model_local_energy(model, params, hamiltonian, s)
    if _is_real_model(model, params, s):
        # O of a real log psi over real parameters is real: a real O halves
        # the work of every product below.
        o_matrix = real_jacobian(model, params, s)
    else:
        o_matrix = real_parameter_jacobian(log_derivatives(model, params, s), params)
    energy, variance, gradient = energy_and_gradient(o_matrix, e_loc, weights)
    direction, trace, finite = gradient, None, None
    if with_sr:
        _, _, _, direction, trace, finite = _sr_attempt(o_matrix, e_loc, weights, diag_shift,
                                                        _sample_space(o_matrix))
    return (e_loc, o_matrix, unflatten_direction(gradient, params),
            unflatten_direction(direction, params), (energy, variance, trace, finite))


def _is_real_model(model, params, s) -> bool:
    if any(jnp.iscomplexobj(p) for p in jax.tree_util.tree_leaves(params)):
        return False
    output = jax.eval_shape(lambda: model.apply({"params": params}, s[:1]))
    return not jnp.issubdtype(output.dtype, jnp.complexfloating)


_unflatten = jax.jit(unflatten_direction)


@functools.partial(jax.jit, static_argnames=("model",))
def _exact_weights(model, params, s):
    return exact_weights(model.apply({"params": params}, s))


def estimate(model: nn.Module, params, hamiltonian, s: jnp.ndarray,
             weights: jnp.ndarray | None = None, diag_shift: float | None = None) -> Estimate:
    """Return the energy and update direction from configurations ``s`` (B, N).

    ``weights`` (B,) default to 1 / B (Monte Carlo samples). With
    ``diag_shift`` the direction is the SR direction (S + diag_shift I)^-1 F,
    otherwise F itself. The statistics are compiled once per model,
    Hamiltonian and batch shape.
    """
    s = jnp.asarray(s, dtype=_real_dtype(jax.tree_util.tree_leaves(params)[0].dtype))
    with_sr = diag_shift is not None
    if with_sr:
        _check_diag_shift(diag_shift)
    # The uniform weights, F and the direction as pytrees come out of one
    # compiled call and the scalars in one transfer, because on a two-core
    # machine each extra dispatch competes with the XLA threads for the cores.
    e_loc, o_matrix, gradient, direction, checks = _statistics(
        model, hamiltonian, params, s, weights, diag_shift, with_sr)
    energy, variance, trace, finite = jax.device_get(checks)

    if with_sr and not _cholesky_trusted(trace, finite, diag_shift, None, o_matrix.dtype):
        if weights is None:
            weights = jnp.full((len(s),), 1.0 / len(s), dtype=s.dtype)
        direction = _unflatten(sr_direction(o_matrix, e_loc, weights, diag_shift), params)
    return Estimate(float(energy), float(variance), e_loc, gradient, direction)


def exact_estimate(model: nn.Module, params, hamiltonian, diag_shift: float | None = None) -> Estimate:
    """Return the estimate from the exact sum over all 2^N configurations."""
    n_sites = hamiltonian.n_sites
    n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
    _check_exact_size(n_sites, _exact_bytes_per_configuration(n_sites, hamiltonian.n_terms, n_params))
    dtype = _real_dtype(jax.tree_util.tree_leaves(params)[0].dtype)
    s = all_configurations(n_sites, dtype)
    weights = _exact_weights(model, params, s)
    return estimate(model, params, hamiltonian, s, weights, diag_shift)


def step(model: nn.Module, optimizer: optax.GradientTransformation, params, opt_state, hamiltonian,
         s: jnp.ndarray | None = None, weights: jnp.ndarray | None = None,
         diag_shift: float | None = None):
    """Run one optimizer step along the VMC direction.

    ``s=None`` uses the exact sum over all configurations. The direction
    (dE/dx + i dE/dy for complex leaves) goes to ``optimizer.update`` as the
    gradient, so no conjugation is needed here.

    Returns:
        (params, opt_state, estimate), the estimate taken before the step.
    """
    if s is None:
        result = exact_estimate(model, params, hamiltonian, diag_shift)
    else:
        result = estimate(model, params, hamiltonian, s, weights, diag_shift)
    params, opt_state = _apply_optimizer(optimizer, result.direction, opt_state, params)
    return params, opt_state, result


@functools.partial(jax.jit, static_argnames=("optimizer",))
def _apply_optimizer(optimizer, direction, opt_state, params):
    updates, opt_state = optimizer.update(direction, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


@dataclass
class Trajectory:
    """Energy before each step and every parameter after it, as numpy.

    ``energies`` has shape (steps,); ``params`` is the params pytree with a
    leading (steps,) axis on every leaf.
    """

    energies: np.ndarray
    params: Any


def train_exact(model: nn.Module, optimizer: optax.GradientTransformation, params, hamiltonian,
                steps: int, diag_shift: float | None = None) -> Trajectory:
    """Run ``steps`` exact-estimator steps of ``optimizer`` and record the trajectory."""
    opt_state = optimizer.init(params)
    energies, history = [], []
    for _ in range(steps):
        params, opt_state, result = step(model, optimizer, params, opt_state, hamiltonian,
                                         diag_shift=diag_shift)
        energies.append(result.energy)
        history.append(jax.tree_util.tree_map(np.asarray, params))
    stacked = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *history)
    return Trajectory(np.asarray(energies), stacked)


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
