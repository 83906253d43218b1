"""The SR direction in parameter space and in sample space, against the numpy reference.

Y has R rows: B for a real O, 2B for a complex one. ``sr_direction`` solves
the P x P system S + eps I when P <= R, and the R x R system Y Y^T + eps I
otherwise. Both must give the direction of ``sr_solve(sr_matrix(O, p), F, eps)``.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from flax_impl import vmc as flax_vmc
from torch_impl import vmc as torch_vmc
from twins import nqs_reference as reference
from twins.hamiltonians import TransverseFieldIsing
from twins.lattice import chain
from twins.nqs_pairs import rbm_pair, relative_error
from twins.tolerances import NQS_FLOAT64_SR

# (samples B, parameters P, complex O, complex E_loc, uniform weights) and the
# system solved: R = B (real O) or 2B (complex O) rows against P columns.
CASES = {
    "real-parameter-space": (60, 25, False, False, True),
    "real-sample-space": (25, 60, False, False, True),
    "complex-parameter-space": (20, 30, True, True, False),
    "complex-sample-space": (20, 70, True, False, False),
    "real-sample-space-weighted": (25, 60, False, False, False),
}


def _problem(n_samples, n_params, complex_o, complex_e, uniform, seed=0):
    rng = np.random.default_rng(seed)
    o_matrix = rng.normal(size=(n_samples, n_params))
    if complex_o:
        o_matrix = o_matrix + 1j * rng.normal(size=(n_samples, n_params))
    e_loc = rng.normal(size=n_samples) + (1j * rng.normal(size=n_samples) if complex_e else 0)
    weights = np.full(n_samples, 1.0 / n_samples) if uniform else rng.random(n_samples)
    return o_matrix, e_loc, weights / weights.sum()


@pytest.mark.parametrize("case", list(CASES))
def test_sr_direction_matches_reference(case):
    o_matrix, e_loc, weights = _problem(*CASES[case])
    _, _, gradient = reference.energy_and_gradient(o_matrix + 0j, e_loc, weights)
    expected = reference.sr_solve(reference.sr_matrix(o_matrix + 0j, weights), gradient, 0.1)

    torch_direction = torch_vmc.sr_direction(torch.tensor(o_matrix), torch.tensor(e_loc),
                                             torch.tensor(weights), 0.1)
    flax_direction = flax_vmc.sr_direction(jnp.asarray(o_matrix), jnp.asarray(e_loc),
                                           jnp.asarray(weights), 0.1)
    assert torch_direction.dtype == torch.float64
    assert flax_direction.dtype == jnp.float64
    assert relative_error(torch_direction.numpy(), expected) < NQS_FLOAT64_SR
    assert relative_error(np.asarray(flax_direction), expected) < NQS_FLOAT64_SR


@pytest.mark.parametrize("framework", ["torch", "flax"])
@pytest.mark.parametrize(("case", "system"), [("real-parameter-space", "S"),
                                              ("complex-sample-space", "Y Y\\^T")])
def test_tiny_shift_warning_names_system(framework, case, system):
    """A shift that vanishes next to the eigenvalues warns about the system it solves.

    Y Y^T is singular by construction (its rows are centred); S is made
    singular by repeating a column of O.
    """
    o_matrix, e_loc, weights = _problem(*CASES[case])
    o_matrix[:, 1] = o_matrix[:, 0]
    if framework == "torch":
        module, as_array = torch_vmc, torch.tensor
    else:
        module, as_array = flax_vmc, jnp.asarray
    with pytest.warns(module.SingularMatrixWarning, match=f"^{system} \\+ 1e-300 I"):
        direction = module.sr_direction(as_array(o_matrix), as_array(e_loc),
                                        as_array(weights), 1e-300)
    assert np.all(np.isfinite(np.asarray(direction)))


def test_real_jacobian_matches_complex_path():
    """``real_jacobian`` of a real RBM is the complex O's real part, column for column."""
    torch_model, flax_model, params = rbm_pair(6, torch.float64, scale=30.0, seed=3)
    s = np.random.default_rng(4).choice([-1.0, 1.0], size=(9, 6))

    torch_expected = torch_vmc.real_parameter_jacobian(
        torch_vmc.log_derivatives(torch_model, torch.tensor(s)),
        dict(torch_model.named_parameters()))
    torch_o = torch_vmc.real_jacobian(torch_model, torch.tensor(s))
    assert torch_o.dtype == torch.float64
    assert not torch_expected.imag.any()
    assert torch.equal(torch_o, torch_expected.real)

    flax_expected = flax_vmc.real_parameter_jacobian(
        flax_vmc.log_derivatives(flax_model, params, jnp.asarray(s)), params)
    flax_o = flax_vmc.real_jacobian(flax_model, params, jnp.asarray(s))
    assert flax_o.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(flax_o), np.asarray(flax_expected.real))


@pytest.mark.parametrize("framework", ["torch", "flax"])
@pytest.mark.parametrize("case", ["real-parameter-space", "complex-sample-space"])
def test_trace_bound_miss_takes_checked_solve(framework, case):
    """With max_condition between the true condition number and the trace bound,
    the Cholesky shortcut is refused and the eigenvalue-checked solve returns
    the same direction, without a warning."""
    o_matrix, e_loc, weights = _problem(*CASES[case])
    _, _, gradient = reference.energy_and_gradient(o_matrix + 0j, e_loc, weights)
    s_matrix = reference.sr_matrix(o_matrix + 0j, weights)
    expected = reference.sr_solve(s_matrix, gradient, 0.1)
    # The system solved in sample space is Y Y^T; it has the nonzero
    # eigenvalues (and trace) of S.
    eigenvalues = np.linalg.eigvalsh(s_matrix)
    condition = (eigenvalues[-1] + 0.1) / (max(eigenvalues[0], 0.0) + 0.1)
    if case.endswith("sample-space"):
        condition = (eigenvalues[-1] + 0.1) / 0.1
    trace_bound = (0.1 + np.trace(s_matrix)) / 0.1
    assert condition < trace_bound
    module, as_array = (torch_vmc, torch.tensor) if framework == "torch" else (flax_vmc, jnp.asarray)
    with warnings.catch_warnings():
        warnings.simplefilter("error", module.SingularMatrixWarning)
        direction = module.sr_direction(as_array(o_matrix), as_array(e_loc), as_array(weights),
                                        0.1, max_condition=(condition + trace_bound) / 2)
    assert relative_error(np.asarray(direction), expected) < NQS_FLOAT64_SR


@pytest.mark.parametrize("framework", ["torch", "flax"])
@pytest.mark.parametrize("diag_shift", [0.0, -0.1])
def test_non_positive_shift_rejected(framework, diag_shift):
    o_matrix, e_loc, weights = _problem(*CASES["real-parameter-space"])
    module, as_array = (torch_vmc, torch.tensor) if framework == "torch" else (flax_vmc, jnp.asarray)
    with pytest.raises(ValueError, match="diag_shift must be positive"):
        module.sr_direction(as_array(o_matrix), as_array(e_loc), as_array(weights), diag_shift)


def test_estimate_tiny_shift_warns_and_agrees():
    """``estimate`` with a vanishing shift takes the least-squares fallback in both twins.

    6 spins, 48 parameters, 9 samples: the sample-space system Y Y^T has rank
    at most 8, so Y Y^T + 1e-300 I is singular to working precision.
    """
    torch_model, flax_model, params = rbm_pair(6, torch.float64, scale=30.0, seed=5)
    hamiltonian = TransverseFieldIsing(chain(6))
    s = np.random.default_rng(6).choice([-1.0, 1.0], size=(9, 6))
    with pytest.warns(torch_vmc.SingularMatrixWarning, match="^Y Y\\^T \\+ 1e-300 I"):
        torch_result = torch_vmc.estimate(torch_model, hamiltonian, torch.tensor(s),
                                          diag_shift=1e-300)
    with pytest.warns(flax_vmc.SingularMatrixWarning, match="^Y Y\\^T \\+ 1e-300 I"):
        flax_result = flax_vmc.estimate(flax_model, params, hamiltonian, jnp.asarray(s),
                                        diag_shift=1e-300)
    torch_kernel = torch_result.direction["Dense.weight"].numpy().T
    flax_kernel = np.asarray(flax_result.direction["Dense"]["kernel"])
    assert np.all(np.isfinite(flax_kernel))
    assert relative_error(torch_kernel, flax_kernel) < NQS_FLOAT64_SR


@pytest.mark.parametrize("framework", ["torch", "flax"])
@pytest.mark.parametrize("shape", [(5, 1), (6, 3), (7, 10), (30, 13)])
def test_lower_gram_block_triangle(framework, shape):
    """The SR system is formed block by block, on and below the diagonal blocks only."""
    a = np.random.default_rng(7).normal(size=shape)
    module, as_array = (torch_vmc, torch.tensor) if framework == "torch" else (flax_vmc, jnp.asarray)
    lower = np.asarray(module._lower_gram(as_array(a)))
    np.testing.assert_allclose(np.tril(lower), np.tril(a.T @ a), rtol=1e-13,
                               atol=1e-13 * shape[0])
    if shape[1] >= 4:
        # The top right block lies above the diagonal blocks: never formed.
        quarter = shape[1] // 4
        np.testing.assert_array_equal(lower[:quarter, -quarter:], 0.0)
    np.testing.assert_allclose(np.asarray(module._symmetric(as_array(lower))), a.T @ a,
                               rtol=1e-13, atol=1e-13 * shape[0])
