"""VMC twins with the exact estimator: O, E_loc, energy, gradient, SR and trajectories.

Every quantity is compared torch vs Flax vs the numpy reference, in float64 and
float32, for real and complex parameters. Gradients are also checked against
finite differences and against autograd of the exact energy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import linen

from flax_impl import ansatz as flax_ansatz
from flax_impl import local_energy as flax_local_energy
from flax_impl import vmc as flax_vmc
from twins import nqs_pairs, tolerances
from twins.nqs_pairs import (
    TORCH_DTYPES,
    flat_params,
    relative_error,
    torch_batched_to_flat,
    torch_to_flat,
)
from torch_impl import ansatz as torch_ansatz
from torch_impl import local_energy as torch_local_energy
from torch_impl import vmc as torch_vmc
from twins import nqs_reference as reference
from twins.hamiltonians import Heisenberg, TransverseFieldIsing, all_configurations
from twins.lattice import chain, square

# Tolerances and the measurements behind them live in twins.tolerances.
FLOAT64_VALUE = tolerances.NQS_FLOAT64_VALUE
FLOAT64_SR = tolerances.NQS_FLOAT64_SR
FLOAT64_TRAJECTORY = tolerances.NQS_FLOAT64_TRAJECTORY
FLOAT32_VALUE = tolerances.NQS_FLOAT32_VALUE
FLOAT32_GRADIENT = tolerances.NQS_FLOAT32_GRADIENT
FLOAT32_SR = tolerances.NQS_FLOAT32_SR
FLOAT32_TRAJECTORY = tolerances.NQS_FLOAT32_TRAJECTORY
# Central differences with step 1e-5 have truncation error ~1e-10 and
# rounding error ~1e-11 on these energies.
FINITE_DIFFERENCE_ATOL = 1e-8

CASES = list(TORCH_DTYPES)
CASE_IDS = ["-".join(case) for case in CASES]
N_SITES = 6

HAMILTONIANS = {
    "ising": TransverseFieldIsing(chain(N_SITES), J=1.0, h=0.7),
    "heisenberg": Heisenberg(chain(N_SITES)),
    "heisenberg-marshall": Heisenberg(square(3, 2, pbc=False), marshall=True),
}


def tolerance(dtype_name: str, float64: float, float32: float) -> float:
    return float64 if dtype_name == "float64" else float32


def reference_params(params) -> dict:
    """Return Flax params as flat float64 / complex128 numpy for the reference."""
    flat = flat_params(params)
    return {name: value.astype(np.complex128 if np.iscomplexobj(value) else np.float64)
            for name, value in flat.items()}


def reference_estimate(hamiltonian, flat, diag_shift=None):
    """Return (energy, variance, gradient, direction) of the exact sum, numpy float64."""
    s = all_configurations(hamiltonian.n_sites)
    weights = reference.exact_weights(reference.rbm_log_psi(flat, s))
    e_loc = hamiltonian.local_energy(functools.partial(reference.rbm_log_psi, flat), s)
    o_matrix = reference.real_parameter_jacobian(reference.rbm_log_derivatives(flat, s), flat)
    energy, variance, gradient = reference.energy_and_gradient(o_matrix, e_loc, weights)
    direction = gradient
    if diag_shift is not None:
        direction = reference.sr_solve(reference.sr_matrix(o_matrix, weights), gradient, diag_shift)
    return (energy, variance, reference.unflatten_direction(gradient, flat),
            reference.unflatten_direction(direction, flat))


def flax_local_energy_compiled(model, params, hamiltonian, s) -> np.ndarray:
    """Return the Flax E_loc under ``jax.jit``, as the VMC estimators run it."""

    def compute(params, s):
        return flax_local_energy.local_energy(functools.partial(model.apply, {"params": params}),
                                              hamiltonian, s)

    return np.asarray(jax.jit(compute)(params, s))


def assert_leaves_close(name, leaves, expected, rtol):
    for key, value in expected.items():
        error = relative_error(leaves[key], value)
        assert error < rtol, f"{name} {key}: relative error {error:.2e} > {rtol:.0e}"


# --- complex-parameter gradient conventions ---------------------------------------

def test_complex_grad_conventions():
    z = torch.tensor(3 + 4j, dtype=torch.complex128, requires_grad=True)
    (z * z.conj()).real.backward()
    assert z.grad.item() == 6 + 8j

    jax_grad = jax.grad(lambda v: jnp.abs(v) ** 2)(jnp.asarray(3 + 4j, dtype=jnp.complex128))
    assert complex(jax_grad) == 6 - 8j


def _torch_complex_steps(optimizer_cls, steps, **kwargs):
    z = torch.tensor(3 + 4j, dtype=torch.complex128, requires_grad=True)
    optimizer = optimizer_cls([z], **kwargs)
    for _ in range(steps):
        optimizer.zero_grad()
        (z * z.conj()).real.backward()
        optimizer.step()
    return z.item()


def _optax_complex_steps(optimizer, steps, conjugate):
    z = jnp.asarray(3 + 4j, dtype=jnp.complex128)
    state = optimizer.init(z)
    for _ in range(steps):
        grad = jax.grad(lambda v: jnp.abs(v) ** 2)(z)
        if conjugate:
            grad = jnp.conj(grad)
        updates, state = optimizer.update(grad, state, z)
        z = optax.apply_updates(z, updates)
    return complex(z)


def test_complex_sgd_step_direction():
    assert _torch_complex_steps(torch.optim.SGD, 1, lr=0.1) == pytest.approx(2.4 + 3.2j, abs=1e-14)
    assert _optax_complex_steps(optax.sgd(0.1), 1, conjugate=True) == pytest.approx(2.4 + 3.2j, abs=1e-14)
    # The raw jax.grad moves the imaginary part the wrong way.
    assert _optax_complex_steps(optax.sgd(0.1), 1, conjugate=False) == pytest.approx(2.4 + 4.8j, abs=1e-14)


def test_complex_adam_moments():
    torch_value = _torch_complex_steps(torch.optim.Adam, 3, lr=0.1)
    assert torch_value == pytest.approx(2.700381523 + 3.700273844j, abs=1e-9)
    joint = _optax_complex_steps(optax.adam(0.1), 3, conjugate=True)
    assert joint == pytest.approx(2.820127975 + 3.760170633j, abs=1e-9)
    split = optax.contrib.split_real_and_imaginary(optax.adam(0.1))
    assert _optax_complex_steps(split, 3, conjugate=True) == pytest.approx(torch_value, abs=1e-14)


# --- two spins: energy gradient of a complex parameter ----------------------------

class TorchTwoSpin(torch_ansatz.NeuralQuantumState):
    """log psi(s) = theta s0 s1 + 0.2 (s0 + s1)."""

    def __init__(self, theta: complex, dtype: torch.dtype):
        super().__init__()
        self.n_sites = 2
        self.theta = torch.nn.Parameter(torch.tensor(theta, dtype=dtype))

    def log_psi(self, s):
        s = s.to(self.theta.dtype)
        return self.theta * s[:, 0] * s[:, 1] + 0.2 * (s[:, 0] + s[:, 1])


class FlaxTwoSpin(flax_ansatz.NeuralQuantumState):
    """log psi(s) = theta s0 s1 + 0.2 (s0 + s1)."""

    theta0: complex
    param_dtype: jnp.dtype

    @linen.compact
    def log_psi(self, s):
        theta = self.param("theta", lambda key: jnp.asarray(self.theta0, self.param_dtype))
        s = s.astype(self.param_dtype)
        return theta * s[:, 0] * s[:, 1] + 0.2 * (s[:, 0] + s[:, 1])


# H = Z0 Z1 - X0 - X1: coupling +1 on the single bond is J = -1 in -J Z Z.
TWO_SPIN = TransverseFieldIsing(chain(2, pbc=False), J=-1.0, h=1.0)
TWO_SPIN_CASES = [
    (0.3, -0.8159135015, 3.0319391688),
    (0.3 + 0.2j, -0.7015864388, 2.8873422553 + 1.1279862134j),
]


def _two_spin_energy(theta: complex) -> float:
    s = all_configurations(2)
    psi = np.exp(theta * s[:, 0] * s[:, 1] + 0.2 * (s[:, 0] + s[:, 1]))
    return float(np.real(np.conj(psi) @ TWO_SPIN.to_dense() @ psi) / np.real(np.conj(psi) @ psi))


@pytest.mark.parametrize("theta, energy, gradient", TWO_SPIN_CASES, ids=["real", "complex"])
def test_two_spin_energy_gradient(theta, energy, gradient):
    is_complex = isinstance(theta, complex)
    step = 1e-5
    finite_x = (_two_spin_energy(theta + step) - _two_spin_energy(theta - step)) / (2 * step)
    finite_y = (_two_spin_energy(theta + 1j * step) - _two_spin_energy(theta - 1j * step)) / (2 * step)
    assert _two_spin_energy(theta) == pytest.approx(energy, abs=1e-10)
    assert finite_x == pytest.approx(gradient.real, abs=1e-9)
    if is_complex:
        assert finite_y == pytest.approx(gradient.imag, abs=1e-9)

    torch_model = TorchTwoSpin(theta, torch.complex128 if is_complex else torch.float64)
    torch_result = torch_vmc.exact_estimate(torch_model, TWO_SPIN)
    flax_model = FlaxTwoSpin(theta, jnp.complex128 if is_complex else jnp.float64)
    params = flax_model.init(jax.random.key(0), jnp.zeros((1, 2)))["params"]
    flax_result = flax_vmc.exact_estimate(flax_model, params, TWO_SPIN)
    for name, result, value in [("torch", torch_result, torch_result.gradient["theta"].item()),
                                ("flax", flax_result, complex(flax_result.gradient["theta"]))]:
        assert result.energy == pytest.approx(energy, abs=1e-10), name
        assert value == pytest.approx(gradient, abs=1e-9), name


# --- log-derivatives O -----------------------------------------------------------

@pytest.mark.parametrize("dtype_name, kind", CASES, ids=CASE_IDS)
def test_rbm_log_derivatives_parity(dtype_name, kind):
    torch_model, flax_model, params = nqs_pairs.rbm_pair(N_SITES, TORCH_DTYPES[(dtype_name, kind)],
                                                         alpha=2, scale=20.0)
    s = nqs_pairs.configurations(N_SITES, 32)
    expected = reference.rbm_log_derivatives(reference_params(params), s)
    torch_o = torch_vmc.log_derivatives(torch_model, torch.tensor(s, dtype=getattr(torch, dtype_name)))
    flax_o = flax_vmc.log_derivatives(flax_model, params, jnp.asarray(s, dtype=dtype_name))
    complex_dtype = np.result_type(np.dtype(dtype_name), np.complex64)
    for leaf in torch_o.values():
        assert leaf.numpy().dtype == complex_dtype
    for leaf in jax.tree_util.tree_leaves(flax_o):
        assert leaf.dtype == complex_dtype
    rtol = tolerance(dtype_name, FLOAT64_VALUE, FLOAT32_VALUE)
    assert_leaves_close("torch", torch_batched_to_flat(torch_o), expected, rtol)
    assert_leaves_close("flax", flat_params(flax_o), expected, rtol)


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_ffn_log_derivatives_parity(dtype_name):
    torch_model, flax_model, params = nqs_pairs.ffn_pair(N_SITES, getattr(torch, dtype_name))
    s = nqs_pairs.configurations(N_SITES, 32)
    torch_o = torch_batched_to_flat(
        torch_vmc.log_derivatives(torch_model, torch.tensor(s, dtype=getattr(torch, dtype_name))))
    flax_o = flat_params(flax_vmc.log_derivatives(flax_model, params, jnp.asarray(s, dtype=dtype_name)))

    # Central differences of the float64 reference, one entry at a time.
    flat = reference_params(params)
    expected = {}
    step = 1e-6
    for name, value in flat.items():
        columns = []
        for index in np.ndindex(value.shape):
            plus = {**flat, name: value.copy()}
            minus = {**flat, name: value.copy()}
            plus[name][index] += step
            minus[name][index] -= step
            columns.append((reference.ffn_log_psi(plus, s) - reference.ffn_log_psi(minus, s)) / (2 * step))
        expected[name] = np.stack(columns, axis=1).reshape(len(s), *value.shape)
    # Central differences: truncation ~1e-12, rounding ~1e-10 relative.
    rtol = tolerance(dtype_name, 1e-8, FLOAT32_VALUE)
    assert_leaves_close("torch", torch_o, expected, rtol)
    assert_leaves_close("flax", flax_o, expected, rtol)
    assert_leaves_close("torch vs flax", torch_o, flax_o, tolerance(dtype_name, FLOAT64_VALUE, FLOAT32_VALUE))


# --- local energies ----------------------------------------------------------------

@pytest.mark.parametrize("hamiltonian_name", list(HAMILTONIANS))
@pytest.mark.parametrize("dtype_name, kind", CASES, ids=CASE_IDS)
def test_local_energy_parity(dtype_name, kind, hamiltonian_name):
    hamiltonian = HAMILTONIANS[hamiltonian_name]
    torch_model, flax_model, params = nqs_pairs.rbm_pair(
        N_SITES, TORCH_DTYPES[(dtype_name, kind)], alpha=2, scale=20.0)
    s = all_configurations(N_SITES)
    flat = reference_params(params)
    expected = hamiltonian.local_energy(functools.partial(reference.rbm_log_psi, flat), s)
    torch_value = torch_local_energy.local_energy(
        torch_model, hamiltonian, torch.tensor(s, dtype=getattr(torch, dtype_name))).numpy()
    flax_value = flax_local_energy_compiled(flax_model, params, hamiltonian, jnp.asarray(s, dtype=dtype_name))
    assert torch_value.dtype == flax_value.dtype
    assert torch_value.dtype == (np.result_type(np.dtype(dtype_name), np.complex64)
                                 if kind == "complex" else np.dtype(dtype_name))
    rtol = tolerance(dtype_name, FLOAT64_VALUE, FLOAT32_VALUE)
    for name, value in [("torch", torch_value), ("flax", flax_value)]:
        error = relative_error(value, expected)
        assert error < rtol, f"{name}: relative error {error:.2e}"


def test_local_energy_matches_dense_matrix():
    hamiltonian = HAMILTONIANS["heisenberg"]
    torch_model, flax_model, params = nqs_pairs.rbm_pair(N_SITES, torch.complex128, scale=20.0)
    s = all_configurations(N_SITES)
    log_psi = torch_model(torch.tensor(s)).detach().numpy()
    psi = np.exp(log_psi - log_psi.max())
    expected = hamiltonian.to_dense() @ psi / psi
    torch_value = torch_local_energy.local_energy(torch_model, hamiltonian, torch.tensor(s)).numpy()
    flax_value = flax_local_energy_compiled(flax_model, params, hamiltonian, jnp.asarray(s))
    assert relative_error(torch_value, expected) < FLOAT64_VALUE
    assert relative_error(flax_value, expected) < FLOAT64_VALUE


# --- exact energy, gradient and SR direction --------------------------------------

@pytest.mark.parametrize("hamiltonian_name", ["ising", "heisenberg"])
@pytest.mark.parametrize("dtype_name, kind", CASES, ids=CASE_IDS)
def test_exact_estimate_parity(dtype_name, kind, hamiltonian_name):
    hamiltonian = HAMILTONIANS[hamiltonian_name]
    torch_model, flax_model, params = nqs_pairs.rbm_pair(
        N_SITES, TORCH_DTYPES[(dtype_name, kind)], alpha=2, scale=20.0)
    energy, variance, gradient, direction = reference_estimate(hamiltonian, reference_params(params), 0.01)
    torch_result = torch_vmc.exact_estimate(torch_model, hamiltonian, diag_shift=0.01)
    flax_result = flax_vmc.exact_estimate(flax_model, params, hamiltonian, diag_shift=0.01)

    value_rtol = tolerance(dtype_name, FLOAT64_VALUE, FLOAT32_VALUE)
    gradient_rtol = tolerance(dtype_name, FLOAT64_VALUE, FLOAT32_GRADIENT)
    sr_rtol = tolerance(dtype_name, FLOAT64_SR, FLOAT32_SR)
    for name, result, gradient_leaves, direction_leaves in [
        ("torch", torch_result, torch_to_flat(torch_result.gradient, params),
         torch_to_flat(torch_result.direction, params)),
        ("flax", flax_result, flat_params(flax_result.gradient), flat_params(flax_result.direction)),
    ]:
        assert result.energy == pytest.approx(energy, rel=value_rtol), name
        assert result.variance == pytest.approx(variance, rel=value_rtol * 10, abs=value_rtol), name
        assert_leaves_close(f"{name} gradient", gradient_leaves, gradient, gradient_rtol)
        assert_leaves_close(f"{name} SR direction", direction_leaves, direction, sr_rtol)


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_sampled_estimate_parity(kind):
    # Monte Carlo batches: repeated configurations, uniform weights 1 / B.
    hamiltonian = HAMILTONIANS["heisenberg"]
    torch_model, flax_model, params = nqs_pairs.rbm_pair(
        N_SITES, TORCH_DTYPES[("float64", kind)], alpha=2, scale=20.0)
    s = nqs_pairs.configurations(N_SITES, 200, seed=3)
    flat = reference_params(params)
    weights = np.full(len(s), 1.0 / len(s))
    e_loc = hamiltonian.local_energy(functools.partial(reference.rbm_log_psi, flat), s)
    o_matrix = reference.real_parameter_jacobian(reference.rbm_log_derivatives(flat, s), flat)
    energy, variance, gradient = reference.energy_and_gradient(o_matrix, e_loc, weights)
    direction = reference.unflatten_direction(
        reference.sr_solve(reference.sr_matrix(o_matrix, weights), gradient, 0.01), flat)

    torch_result = torch_vmc.estimate(torch_model, hamiltonian, torch.tensor(s), diag_shift=0.01)
    flax_result = flax_vmc.estimate(flax_model, params, hamiltonian, jnp.asarray(s), diag_shift=0.01)
    for name, result, direction_leaves in [
        ("torch", torch_result, torch_to_flat(torch_result.direction, params)),
        ("flax", flax_result, flat_params(flax_result.direction)),
    ]:
        assert result.energy == pytest.approx(energy, rel=FLOAT64_VALUE), name
        assert result.variance == pytest.approx(variance, rel=FLOAT64_VALUE), name
        assert relative_error(result.e_loc, e_loc) < FLOAT64_VALUE, name
        assert_leaves_close(f"{name} SR direction", direction_leaves, direction, FLOAT64_SR)


def test_exact_energy_matches_dense_expectation():
    hamiltonian = HAMILTONIANS["heisenberg"]
    torch_model, flax_model, params = nqs_pairs.rbm_pair(N_SITES, torch.complex128, scale=20.0)
    log_psi = torch_model(torch.tensor(all_configurations(N_SITES))).detach().numpy()
    psi = np.exp(log_psi - log_psi.real.max())
    expected = np.real(np.conj(psi) @ hamiltonian.to_dense() @ psi) / np.real(np.conj(psi) @ psi)
    assert torch_vmc.exact_estimate(torch_model, hamiltonian).energy == pytest.approx(expected, rel=1e-13)
    assert flax_vmc.exact_estimate(flax_model, params, hamiltonian).energy == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_gradient_matches_finite_differences(kind):
    hamiltonian = TransverseFieldIsing(chain(4), h=0.9)
    _, _, params = nqs_pairs.rbm_pair(4, TORCH_DTYPES[("float64", kind)], scale=30.0)
    flat = reference_params(params)
    _, _, gradient, _ = reference_estimate(hamiltonian, flat)
    dense = hamiltonian.to_dense()
    s = all_configurations(4)

    def energy(trial):
        psi = np.exp(reference.rbm_log_psi(trial, s))
        return np.real(np.conj(psi) @ dense @ psi) / np.real(np.conj(psi) @ psi)

    step = 1e-5
    for name, value in flat.items():
        for index in np.ndindex(value.shape):
            directions = [1.0, 1j] if kind == "complex" else [1.0]
            expected = 0.0
            for unit in directions:
                plus, minus = {**flat, name: value.copy()}, {**flat, name: value.copy()}
                plus[name][index] += unit * step
                minus[name][index] -= unit * step
                # The update direction for z = x + i y is dE/dx + i dE/dy.
                expected += unit * (energy(plus) - energy(minus)) / (2 * step)
            assert abs(gradient[name][index] - expected) < FINITE_DIFFERENCE_ATOL, (name, index)


def test_gradient_matches_autograd_of_energy():
    # E(theta) = <psi|H|psi> / <psi|psi> differentiated by each framework's
    # autograd: torch's .grad equals the VMC direction, jax.grad its conjugate.
    hamiltonian = HAMILTONIANS["heisenberg"]
    torch_model, flax_model, params = nqs_pairs.rbm_pair(N_SITES, torch.complex128, scale=20.0)
    s = all_configurations(N_SITES)
    dense = hamiltonian.to_dense()

    torch_model.zero_grad()
    psi = torch.exp(torch_model(torch.tensor(s)))
    energy = (psi.conj() @ torch.tensor(dense, dtype=psi.dtype) @ psi).real / (psi.conj() @ psi).real
    energy.backward()
    autograd = {name: p.grad for name, p in torch_model.named_parameters()}
    vmc_gradient = torch_vmc.exact_estimate(torch_model, hamiltonian).gradient
    assert_leaves_close("torch", torch_to_flat(vmc_gradient, params), torch_to_flat(autograd, params),
                        FLOAT64_VALUE)

    def flax_energy(params):
        psi = jnp.exp(flax_model.apply({"params": params}, jnp.asarray(s)))
        return jnp.real(psi.conj() @ jnp.asarray(dense) @ psi) / jnp.real(psi.conj() @ psi)

    conjugated = jax.tree_util.tree_map(jnp.conj, jax.grad(flax_energy)(params))
    vmc_gradient = flax_vmc.exact_estimate(flax_model, params, hamiltonian).gradient
    assert_leaves_close("flax", flat_params(vmc_gradient), flat_params(conjugated), FLOAT64_VALUE)


def test_exact_estimator_size_limit():
    hamiltonian = TransverseFieldIsing(chain(torch_vmc.MAX_EXACT_SITES + 1))
    n_sites = hamiltonian.n_sites
    with pytest.raises(ValueError, match=r"GiB, and the limit is 16 sites"):
        torch_vmc.exact_estimate(torch_ansatz.RBM(n_sites), hamiltonian)
    flax_model = flax_ansatz.RBM()
    params = flax_model.init(jax.random.key(0), jnp.zeros((1, n_sites)))["params"]
    with pytest.raises(ValueError, match=r"GiB, and the limit is 16 sites"):
        flax_vmc.exact_estimate(flax_model, params, hamiltonian)


def test_configuration_enumeration_matches():
    expected = all_configurations(5)
    np.testing.assert_array_equal(torch_vmc.all_configurations(5).numpy(), expected)
    np.testing.assert_array_equal(np.asarray(flax_vmc.all_configurations(5)), expected)


# --- SR with more parameters than samples -----------------------------------------

@pytest.fixture(scope="module")
def underdetermined_sr():
    """S and F for an N = 40 RBM (1680 parameters) from 1008 random configurations."""
    n_sites, n_samples = 40, 1008
    rng = np.random.default_rng(0)
    flat = {
        "Dense/kernel": rng.normal(0.0, 0.01, (n_sites, n_sites)),
        "Dense/bias": rng.normal(0.0, 0.01, n_sites),
        "visible_bias": rng.normal(0.0, 0.01, n_sites),
    }
    s = rng.choice([-1.0, 1.0], size=(n_samples, n_sites))
    weights = np.full(n_samples, 1.0 / n_samples)
    hamiltonian = TransverseFieldIsing(chain(n_sites))
    e_loc = hamiltonian.local_energy(functools.partial(reference.rbm_log_psi, flat), s)
    o_matrix = reference.real_parameter_jacobian(reference.rbm_log_derivatives(flat, s), flat)
    _, _, gradient = reference.energy_and_gradient(o_matrix, e_loc, weights)
    return reference.sr_matrix(o_matrix, weights), gradient


def test_sr_matrix_rank_deficient(underdetermined_sr):
    s_matrix, _ = underdetermined_sr
    assert s_matrix.shape == (1680, 1680)
    eigenvalues = np.linalg.eigvalsh(s_matrix)
    # numpy.linalg.matrix_rank's default threshold, applied to the eigenvalues.
    threshold = eigenvalues[-1] * len(s_matrix) * np.finfo(np.float64).eps
    assert np.sum(eigenvalues > threshold) == 1007
    shifted = eigenvalues + 0.1
    assert 10 < shifted[-1] / shifted[0] < 20


def test_sr_shift_parity(underdetermined_sr):
    s_matrix, gradient = underdetermined_sr
    expected = reference.sr_solve(s_matrix, gradient, 0.1)
    assert np.all(np.isfinite(expected))
    torch_direction = torch_vmc.sr_solve(torch.tensor(s_matrix), torch.tensor(gradient), 0.1)
    flax_direction = flax_vmc.sr_solve(jnp.asarray(s_matrix), jnp.asarray(gradient), 0.1)
    assert relative_error(torch_direction.numpy(), expected) < FLOAT64_SR
    assert relative_error(flax_direction, expected) < FLOAT64_SR


SOLVERS = {
    "numpy": (reference.sr_solve, reference.SingularMatrixWarning, np.asarray),
    "torch": (torch_vmc.sr_solve, torch_vmc.SingularMatrixWarning, torch.tensor),
    "flax": (flax_vmc.sr_solve, flax_vmc.SingularMatrixWarning, jnp.asarray),
}


@pytest.mark.parametrize("framework", list(SOLVERS))
def test_sr_without_shift_raises(underdetermined_sr, framework):
    s_matrix, gradient = underdetermined_sr
    solve, _, as_array = SOLVERS[framework]
    with pytest.raises(ValueError, match="diag_shift must be positive"):
        solve(as_array(s_matrix), as_array(gradient), 0.0)


@pytest.mark.parametrize("framework", list(SOLVERS))
def test_sr_tiny_shift_falls_back(framework):
    # 40 parameters, 10 samples: rank 9, and a shift of 1e-300 vanishes
    # next to the eigenvalues, so S + shift stays singular.
    rng = np.random.default_rng(1)
    o_matrix = rng.normal(size=(10, 40)) + 1j * rng.normal(size=(10, 40))
    weights = np.full(10, 0.1)
    s_matrix = reference.sr_matrix(o_matrix, weights)
    gradient = s_matrix @ rng.normal(size=40)
    solve, warning, as_array = SOLVERS[framework]
    with pytest.warns(warning, match="least-squares"):
        direction = np.asarray(solve(as_array(s_matrix), as_array(gradient), 1e-300))
    assert np.all(np.isfinite(direction))
    # gradient lies in the range of S, so least squares solves it exactly.
    np.testing.assert_allclose(s_matrix @ direction, gradient, atol=1e-10)


# --- training trajectories --------------------------------------------------------

def _compare_trajectories(torch_trajectory, flax_trajectory, rtol):
    energy_error = np.abs(torch_trajectory.energies - flax_trajectory.energies) / np.abs(flax_trajectory.energies)
    worst = int(np.argmax(energy_error))
    assert energy_error[worst] < rtol, (
        f"energy at step {worst}: torch {torch_trajectory.energies[worst]!r}, "
        f"flax {flax_trajectory.energies[worst]!r}")
    flax_leaves = flat_params(flax_trajectory.params)
    torch_leaves = torch_batched_to_flat(torch_trajectory.params)
    for name, expected in flax_leaves.items():
        steps = len(expected)
        difference = np.abs(torch_leaves[name] - expected).reshape(steps, -1).max(axis=1)
        per_step = difference / np.abs(expected).reshape(steps, -1).max(axis=1)
        worst = int(np.argmax(per_step))
        assert per_step[worst] < rtol, f"{name} at step {worst}: relative error {per_step[worst]:.2e}"


def test_trajectory_sgd_sr_real_rbm():
    hamiltonian = TransverseFieldIsing(chain(8))
    torch_model, flax_model, params = nqs_pairs.rbm_pair(8, torch.float64)
    torch_trajectory = torch_vmc.train_exact(
        torch_model, torch.optim.SGD(torch_model.parameters(), lr=0.05), hamiltonian, 200, diag_shift=0.01)
    flax_trajectory = flax_vmc.train_exact(flax_model, optax.sgd(0.05), params, hamiltonian, 200,
                                           diag_shift=0.01)
    _compare_trajectories(torch_trajectory, flax_trajectory, FLOAT64_TRAJECTORY)
    exact = hamiltonian.ground_energy()
    assert abs(flax_trajectory.energies[-1] - exact) / abs(exact) < 1e-3


def test_trajectory_adam_complex_rbm():
    hamiltonian = Heisenberg(chain(8))
    torch_model, flax_model, params = nqs_pairs.rbm_pair(8, torch.complex128)
    torch_trajectory = torch_vmc.train_exact(
        torch_model, torch.optim.Adam(torch_model.parameters(), lr=0.01), hamiltonian, 200)
    optimizer = optax.contrib.split_real_and_imaginary(optax.adam(0.01))
    flax_trajectory = flax_vmc.train_exact(flax_model, optimizer, params, hamiltonian, 200)
    _compare_trajectories(torch_trajectory, flax_trajectory, FLOAT64_TRAJECTORY)
    assert flax_trajectory.energies[-1] < flax_trajectory.energies[0] - 1.0


def test_trajectory_adam_ffn_heisenberg():
    # Real parameters, complex log psi: the phase must learn the Heisenberg signs.
    hamiltonian = Heisenberg(chain(8))
    torch_model, flax_model, params = nqs_pairs.ffn_pair(8, torch.float64, alpha=1)
    torch_trajectory = torch_vmc.train_exact(
        torch_model, torch.optim.Adam(torch_model.parameters(), lr=0.01), hamiltonian, 200)
    flax_trajectory = flax_vmc.train_exact(flax_model, optax.adam(0.01), params, hamiltonian, 200)
    _compare_trajectories(torch_trajectory, flax_trajectory, FLOAT64_TRAJECTORY)
    assert flax_trajectory.energies[-1] < flax_trajectory.energies[0] - 1.0


def test_trajectory_float32_sgd_sr():
    hamiltonian = TransverseFieldIsing(chain(8))
    torch_model, flax_model, params = nqs_pairs.rbm_pair(8, torch.float32)
    torch_trajectory = torch_vmc.train_exact(
        torch_model, torch.optim.SGD(torch_model.parameters(), lr=0.05), hamiltonian, 50, diag_shift=0.01)
    flax_trajectory = flax_vmc.train_exact(flax_model, optax.sgd(0.05), params, hamiltonian, 50,
                                           diag_shift=0.01)
    assert flax_trajectory.energies.dtype == np.float64  # Python floats from float32 values.
    assert flax_trajectory.params["Dense"]["kernel"].dtype == np.float32
    _compare_trajectories(torch_trajectory, flax_trajectory, FLOAT32_TRAJECTORY)


# --- ansatz capacity (long runs, exact estimator) ----------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_ffn_learns_heisenberg_signs(framework):
    # Without the Marshall rule the ground state has signs, which the phase
    # head of the real-parameter FFN has to learn. NOTE: from torch seeds 0
    # and 5 this run stalls near 9% and 13% error (a wrong sign structure).
    # Seeds 1 to 4 reach 5e-4 within 40 steps.
    hamiltonian = Heisenberg(chain(12))
    exact = hamiltonian.ground_energy()
    torch_model, flax_model, params = nqs_pairs.ffn_pair(12, torch.float64, alpha=2, seed=1)
    if framework == "torch":
        optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.05)
        trajectory = torch_vmc.train_exact(torch_model, optimizer, hamiltonian, 100, diag_shift=0.01)
    else:
        trajectory = flax_vmc.train_exact(flax_model, optax.sgd(0.05), params, hamiltonian, 100,
                                          diag_shift=0.01)
    assert abs(trajectory.energies[-1] - exact) / abs(exact) < 5e-3


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_rbm_learns_ising_ground_state(framework):
    hamiltonian = TransverseFieldIsing(chain(12))
    exact = hamiltonian.ground_energy()
    torch_model, flax_model, params = nqs_pairs.rbm_pair(12, torch.float64)
    if framework == "torch":
        optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.05)
        trajectory = torch_vmc.train_exact(torch_model, optimizer, hamiltonian, 200, diag_shift=0.01)
    else:
        trajectory = flax_vmc.train_exact(flax_model, optax.sgd(0.05), params, hamiltonian, 200,
                                          diag_shift=0.01)
    assert abs(trajectory.energies[-1] - exact) / abs(exact) < 2e-3
