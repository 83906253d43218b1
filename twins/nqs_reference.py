"""float64 numpy oracles for the neural-quantum-state twins.

Parameters are flat dicts keyed by the Flax path joined with "/" (the names
NetKet uses): ``Dense/kernel`` (N, H), ``Dense/bias`` (H,), ``visible_bias`` (N,).
Estimates take configurations ``s`` (B, N) with weights p (B,) that sum to 1:
|psi|^2 / sum |psi|^2 for the exact sum over all 2^N configurations, 1 / B for
Monte Carlo samples.

Complex parameters follow one convention everywhere: a complex parameter
z = x + i y counts as the two real parameters (x, y), and a gradient or update
direction for it is returned as dE/dx + i dE/dy, the value torch stores in
``.grad`` (``jax.grad`` returns the conjugate).
"""

import warnings

import numpy as np

LOG2 = float(np.log(2.0))


class SingularMatrixWarning(RuntimeWarning):
    """The SR matrix S + shift is singular or too ill-conditioned to solve."""


def log_cosh(x):
    """Return log cosh(x) for real or complex ``x`` without overflow.

    log cosh(x) = y + log1p(exp(-2 y)) - log 2 with y = x if Re x >= 0 else -x
    (cosh is even). |exp(-2 y)| <= 1, so nothing overflows, and for complex x
    the imaginary part (the phase) is kept. The branch can differ from
    log(cosh(x)) by a multiple of 2 pi i; exp of both is the same number.
    """
    x = np.asarray(x)
    y = np.where(x.real < 0, -x, x)
    return y + np.log1p(np.exp(-2.0 * y)) - LOG2


def rbm_log_psi(params: dict, s: np.ndarray) -> np.ndarray:
    """Return log psi(s) = s . a + sum_j log cosh(b_j + (s W)_j), shape (B,).

    W = ``Dense/kernel`` (N, H), b = ``Dense/bias`` (H,), a = ``visible_bias`` (N,);
    a missing bias counts as zero.
    """
    s = np.asarray(s, dtype=np.float64)
    theta = s @ params["Dense/kernel"]
    if "Dense/bias" in params:
        theta = theta + params["Dense/bias"]
    value = np.sum(log_cosh(theta), axis=-1)
    if "visible_bias" in params:
        value = value + s @ params["visible_bias"]
    return value


def rbm_log_derivatives(params: dict, s: np.ndarray) -> dict:
    """Return O_k(s) = d log psi(s) / d theta_k per parameter, each (B, *shape).

    d/da_i = s_i, d/db_j = tanh(theta_j), d/dW_ij = s_i tanh(theta_j). For
    complex parameters these are the complex (holomorphic) derivatives.
    """
    s = np.asarray(s, dtype=np.float64)
    theta = s @ params["Dense/kernel"]
    if "Dense/bias" in params:
        theta = theta + params["Dense/bias"]
    activation = np.tanh(theta)
    derivatives = {"Dense/kernel": s[:, :, None] * activation[:, None, :]}
    if "Dense/bias" in params:
        derivatives["Dense/bias"] = activation
    if "visible_bias" in params:
        derivatives["visible_bias"] = s.astype(activation.dtype)
    return derivatives


def ffn_log_psi(params: dict, s: np.ndarray) -> np.ndarray:
    """Return log psi(s) = A(s) + i Phi(s) of the feed-forward ansatz, shape (B,).

    A and Phi are two perceptrons N -> H -> 1 with tanh hidden units and no
    output bias; the keys are ``amplitude/layers_0/kernel`` (N, H),
    ``amplitude/layers_0/bias`` (H,), ``amplitude/layers_2/kernel`` (H, 1), and
    the same under ``phase/``.
    """
    s = np.asarray(s, dtype=np.float64)

    def perceptron(prefix):
        hidden = np.tanh(s @ params[f"{prefix}/layers_0/kernel"] + params[f"{prefix}/layers_0/bias"])
        return (hidden @ params[f"{prefix}/layers_2/kernel"])[:, 0]

    return perceptron("amplitude") + 1j * perceptron("phase")


def exact_weights(log_psi: np.ndarray) -> np.ndarray:
    """Return p = |psi|^2 / sum |psi|^2 from log psi (B,), shifted so nothing overflows."""
    log_prob = 2.0 * np.real(log_psi)
    prob = np.exp(log_prob - np.max(log_prob))
    return prob / np.sum(prob)


def real_parameter_jacobian(derivatives: dict, params: dict) -> np.ndarray:
    """Return O as a complex matrix (B, P) over the real parameters.

    Leaves are taken in the order of ``params``. A real leaf contributes its
    O; a complex leaf z = x + i y contributes, per entry, the columns
    d log psi / dx = O and d log psi / dy = i O, interleaved (x, y) as
    ``torch.view_as_real`` lays them out.
    """
    columns = []
    for name, value in params.items():
        o = np.asarray(derivatives[name]).reshape(len(derivatives[name]), -1)
        if np.iscomplexobj(value):
            o = np.stack([o, 1j * o], axis=-1).reshape(o.shape[0], -1)
        columns.append(o.astype(np.complex128))
    return np.concatenate(columns, axis=1)


def energy_and_gradient(o_matrix: np.ndarray, e_loc: np.ndarray, weights: np.ndarray):
    """Return the energy <E_loc>, its variance and F = 2 Re <conj(O) (E_loc - <E_loc>)>.

    ``o_matrix`` (B, P) is from ``real_parameter_jacobian``; <.> is the mean
    with ``weights`` (B,). F (P,) is the gradient over the real parameters.
    """
    energy = np.sum(weights * e_loc)
    centred = e_loc - energy
    variance = float(np.sum(weights * np.abs(centred) ** 2))
    gradient = 2.0 * np.real(np.conj(o_matrix).T @ (weights * centred))
    return float(np.real(energy)), variance, gradient


def sr_matrix(o_matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return S = Re <conj(O - <O>)^T (O - <O>)>, real symmetric (P, P)."""
    centred = o_matrix - weights @ o_matrix
    return np.real(np.conj(centred).T @ (weights[:, None] * centred))


def sr_solve(s_matrix: np.ndarray, gradient: np.ndarray, diag_shift: float,
             max_condition: float = 1e12) -> np.ndarray:
    """Solve (S + diag_shift I) delta = F for the SR update direction delta (P,).

    S is positive semi-definite with rank at most B - 1 for B samples, so it is
    singular whenever there are fewer samples than parameters. A positive
    ``diag_shift`` makes the system positive definite. A non-positive shift
    raises ``ValueError``. If the shifted matrix is still singular to working
    precision (condition number above ``max_condition``), a
    ``SingularMatrixWarning`` is issued and the least-squares solution
    (``numpy.linalg.lstsq``) is returned instead.
    """
    if not diag_shift > 0:
        raise ValueError(
            f"diag_shift must be positive, got {diag_shift!r}: S = Re cov(O) has rank at "
            f"most n_samples - 1 and is singular without a shift. Use e.g. diag_shift=0.01."
        )
    shifted = s_matrix + diag_shift * np.eye(len(s_matrix))
    eigenvalues = np.linalg.eigvalsh(shifted)
    smallest, largest = eigenvalues[0], eigenvalues[-1]
    condition = largest / smallest if smallest > 0 else np.inf
    if not condition <= max_condition:
        warnings.warn(
            f"S + {diag_shift:g} I has condition number {condition:.3g} > {max_condition:.0e}; "
            f"returning the least-squares solution. Increase diag_shift.",
            SingularMatrixWarning, stacklevel=2,
        )
        return np.linalg.lstsq(shifted, gradient, rcond=None)[0]
    return np.linalg.solve(shifted, gradient)


def unflatten_direction(direction: np.ndarray, params: dict) -> dict:
    """Split a real vector (P,) back into leaves shaped like ``params``.

    A complex leaf takes two consecutive entries per element, (x, y), and
    returns them as x + i y.
    """
    leaves, offset = {}, 0
    for name, value in params.items():
        value = np.asarray(value)
        count = value.size * (2 if np.iscomplexobj(value) else 1)
        chunk = direction[offset:offset + count]
        offset += count
        if np.iscomplexobj(value):
            chunk = chunk[0::2] + 1j * chunk[1::2]
        leaves[name] = chunk.reshape(value.shape)
    if offset != len(direction):
        raise ValueError(f"direction has {len(direction)} entries but params need {offset}.")
    return leaves
