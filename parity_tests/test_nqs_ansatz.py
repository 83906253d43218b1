"""Ansatz twins: stable log cosh, RBM and FFN log psi against the numpy reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from flax_impl import ansatz as flax_ansatz
from twins import nqs_pairs
from twins.nqs_pairs import TORCH_DTYPES, flat_params, wrapped_difference
from torch_impl import ansatz as torch_ansatz
from twins import convert
from twins import nqs_reference as reference

N_SITES = 6
BATCH = 16

# Same IEEE operations on both sides; a dot product of N terms and a sum of
# H log cosh terms differ in summation order only. Measured worst: 4.2e-16.
FLOAT64_LOG_PSI = 1e-12
# float32 eps is 1.2e-7, and the sums above round a few times. Measured
# worst: 4.1e-7 (complex RBM).
FLOAT32_LOG_PSI = 5e-6

CASES = list(TORCH_DTYPES)


def rbm_pair(torch_dtype, alpha=2, scale=1.0, seed=0):
    return nqs_pairs.rbm_pair(N_SITES, torch_dtype, alpha, scale, seed)


def ffn_pair(dtype_name="float64", seed=0):
    return nqs_pairs.ffn_pair(N_SITES, getattr(torch, dtype_name), alpha=2, seed=seed)


def configurations(seed: int = 0) -> np.ndarray:
    return nqs_pairs.configurations(N_SITES, BATCH, seed)


# --- log cosh -------------------------------------------------------------------

LOG_COSH_CASES = [
    (800.0, 799.3068528194401),
    (-800.0, 799.3068528194401),
    (3.0, 2.309328504577785),
    (800.0 + 0.3j, 799.3068528194401 + 0.3j),
]


@pytest.mark.parametrize("x, expected", LOG_COSH_CASES, ids=lambda v: str(v))
def test_log_cosh_float64_values(x, expected):
    dtype = np.complex128 if isinstance(x, complex) else np.float64
    torch_value = torch_ansatz.log_cosh(torch.tensor(x, dtype=getattr(torch, np.dtype(dtype).name)))
    flax_value = flax_ansatz.log_cosh(jnp.asarray(x, dtype=dtype))
    for name, value in [("numpy", reference.log_cosh(np.asarray(x, dtype=dtype))),
                        ("torch", torch_value.numpy()), ("flax", np.asarray(flax_value))]:
        assert np.abs(value - expected) <= 1e-13 * abs(expected), f"{name}: {value} != {expected}"


def test_log_cosh_naive_overflows():
    with np.errstate(over="ignore"):
        assert np.isinf(np.log(np.cosh(800.0)))
    assert torch.isinf(torch.log(torch.cosh(torch.tensor(100.0, dtype=torch.float32))))


def test_log_cosh_float32_no_overflow():
    torch_value = torch_ansatz.log_cosh(torch.tensor(100.0, dtype=torch.float32))
    flax_value = flax_ansatz.log_cosh(jnp.asarray(100.0, dtype=jnp.float32))
    assert torch_value.dtype == torch.float32
    assert flax_value.dtype == jnp.float32
    assert torch_value.item() == pytest.approx(99.30685, rel=1e-7)
    assert float(flax_value) == pytest.approx(99.30685, rel=1e-7)


def test_log_cosh_branch_differs_by_two_pi():
    z = 0.5 + 5j
    principal = torch.log(torch.cosh(torch.tensor(z, dtype=torch.complex128))).item()
    stable = torch_ansatz.log_cosh(torch.tensor(z, dtype=torch.complex128)).item()
    assert principal == pytest.approx(-0.5220555846 - 1.001394202j, abs=1e-9)
    assert stable == pytest.approx(-0.5220555846 + 5.281791105j, abs=1e-9)
    assert stable.imag - principal.imag == pytest.approx(2 * math.pi, abs=1e-12)
    assert abs(np.exp(stable) - np.exp(principal)) < 1e-14 * abs(np.exp(principal))
    assert wrapped_difference(stable, principal) < 1e-12
    flax_stable = complex(flax_ansatz.log_cosh(jnp.asarray(z, dtype=jnp.complex128)))
    assert flax_stable == pytest.approx(stable, abs=1e-14)


def test_log_cosh_gradient_is_tanh():
    x = torch.tensor([-3.0, -1e-3, 0.0, 2.0, 900.0], dtype=torch.float64, requires_grad=True)
    torch_ansatz.log_cosh(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.tanh(x.detach().numpy()), atol=1e-15)
    grad = jax.grad(lambda v: flax_ansatz.log_cosh(v).sum())(jnp.asarray(x.detach().numpy()))
    np.testing.assert_allclose(np.asarray(grad), np.tanh(x.detach().numpy()), atol=1e-15)


# --- RBM --------------------------------------------------------------------------

def test_rbm_parameter_names_and_shapes():
    flax_model = flax_ansatz.RBM(alpha=2)
    params = flax_model.init(jax.random.key(0), jnp.zeros((1, N_SITES)))["params"]
    shapes = {name: value.shape for name, value in flat_params(params).items()}
    assert shapes == {"Dense/kernel": (N_SITES, 2 * N_SITES), "Dense/bias": (2 * N_SITES,),
                      "visible_bias": (N_SITES,)}
    torch_model = torch_ansatz.RBM(N_SITES, 2)
    shapes = {name: tuple(value.shape) for name, value in torch_model.state_dict().items()}
    assert shapes == {"Dense.weight": (2 * N_SITES, N_SITES), "Dense.bias": (2 * N_SITES,),
                      "visible_bias": (N_SITES,)}


def test_rbm_without_biases():
    torch_model = torch_ansatz.RBM(N_SITES, 1, use_hidden_bias=False, use_visible_bias=False)
    assert list(torch_model.state_dict()) == ["Dense.weight"]
    flax_model = flax_ansatz.RBM(use_hidden_bias=False, use_visible_bias=False)
    params = flax_model.init(jax.random.key(0), jnp.zeros((1, N_SITES)))["params"]
    assert list(flat_params(params)) == ["Dense/kernel"]
    s = configurations()
    params = convert.state_dict_to_variables(torch_model.state_dict(), params)
    expected = reference.rbm_log_psi(flat_params(params), s)
    np.testing.assert_allclose(torch_model(torch.tensor(s)).detach().numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(flax_model.apply({"params": params}, s)), expected, rtol=1e-12)


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_rbm_init_law(kind):
    # 64 sites, alpha 4: 16,384 kernel entries. The sample std of n normal draws
    # has relative standard error 1 / sqrt(2 n); allow 5 of them.
    n_sites, alpha = 64, 4
    torch_dtype = torch.complex128 if kind == "complex" else torch.float64
    torch.manual_seed(0)
    torch_kernel = torch_ansatz.RBM(n_sites, alpha, dtype=torch_dtype).Dense.weight.detach().numpy()
    flax_model = flax_ansatz.RBM(alpha=alpha, param_dtype=torch_kernel.dtype)
    flax_kernel = np.asarray(flax_model.init(jax.random.key(0), jnp.zeros((1, n_sites)))["params"]["Dense"]["kernel"])
    for name, kernel in [("torch", torch_kernel), ("flax", flax_kernel)]:
        parts = [kernel.real, kernel.imag] if kind == "complex" else [kernel]
        expected_std = 0.01 / math.sqrt(len(parts))
        for part in parts:
            bound = 5 * expected_std / math.sqrt(2 * part.size)
            assert abs(part.std() - expected_std) < bound, f"{name}: std {part.std()} vs {expected_std}"
            assert abs(part.mean()) < 5 * expected_std / math.sqrt(part.size), f"{name}: mean {part.mean()}"


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_rbm_conversion_round_trip(kind):
    torch_dtype = torch.complex128 if kind == "complex" else torch.float64
    torch_model, _, params = rbm_pair(torch_dtype)
    state_dict = convert.variables_to_state_dict(params, torch_model.state_dict())
    for name, value in torch_model.state_dict().items():
        assert state_dict[name].dtype == value.numpy().dtype
        np.testing.assert_array_equal(state_dict[name], value.numpy())
    kernel = np.asarray(params["Dense"]["kernel"])
    np.testing.assert_array_equal(kernel, torch_model.Dense.weight.detach().numpy().T)


@pytest.mark.parametrize("dtype_name, kind", CASES, ids=["-".join(c) for c in CASES])
def test_rbm_log_psi_parity(dtype_name, kind):
    torch_model, flax_model, params = rbm_pair(TORCH_DTYPES[(dtype_name, kind)], scale=30.0)
    s = configurations()
    expected = reference.rbm_log_psi({k: v.astype(np.complex128 if kind == "complex" else np.float64)
                                      for k, v in flat_params(params).items()}, s)
    torch_value = torch_model(torch.tensor(s, dtype=getattr(torch, dtype_name))).detach().numpy()
    flax_value = np.asarray(flax_model.apply({"params": params}, jnp.asarray(s, dtype=dtype_name)))
    assert torch_value.dtype == flax_value.dtype == params["visible_bias"].dtype
    tolerance = FLOAT64_LOG_PSI if dtype_name == "float64" else FLOAT32_LOG_PSI
    scale = np.max(np.abs(expected))
    for name, value in [("torch", torch_value), ("flax", flax_value)]:
        error = np.max(wrapped_difference(value, expected)) / scale
        assert error < tolerance, f"{name} {dtype_name} {kind}: relative error {error:.2e}"


def test_rbm_large_weights_stay_finite():
    torch_model, flax_model, params = rbm_pair(torch.float64, scale=1e5)
    s = configurations()
    torch_value = torch_model(torch.tensor(s)).detach().numpy()
    flax_value = np.asarray(flax_model.apply({"params": params}, s))
    assert np.all(np.isfinite(torch_value))
    np.testing.assert_allclose(torch_value, flax_value, rtol=1e-12)


# --- FFN --------------------------------------------------------------------------

def test_ffn_parameter_names():
    _, _, params = ffn_pair()
    shapes = {name: value.shape for name, value in flat_params(params).items()}
    hidden = 2 * N_SITES
    for head in ("amplitude", "phase"):
        assert shapes[f"{head}/layers_0/kernel"] == (N_SITES, hidden)
        assert shapes[f"{head}/layers_0/bias"] == (hidden,)
        assert shapes[f"{head}/layers_2/kernel"] == (hidden, 1)
    assert len(shapes) == 6


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_ffn_log_psi_parity(dtype_name):
    torch_model, flax_model, params = ffn_pair(dtype_name)
    s = configurations()
    expected = reference.ffn_log_psi({k: v.astype(np.float64) for k, v in flat_params(params).items()}, s)
    torch_value = torch_model(torch.tensor(s, dtype=getattr(torch, dtype_name))).detach().numpy()
    flax_value = np.asarray(flax_model.apply({"params": params}, jnp.asarray(s, dtype=dtype_name)))
    complex_dtype = np.result_type(np.dtype(dtype_name), np.complex64)
    assert torch_value.dtype == flax_value.dtype == complex_dtype
    tolerance = FLOAT64_LOG_PSI if dtype_name == "float64" else FLOAT32_LOG_PSI
    scale = np.max(np.abs(expected))
    for name, value in [("torch", torch_value), ("flax", flax_value)]:
        error = np.max(np.abs(value - expected)) / scale
        assert error < tolerance, f"{name} {dtype_name}: relative error {error:.2e}"


def test_ffn_rejects_complex_parameters():
    with pytest.raises(ValueError, match="real parameters"):
        torch_ansatz.FFN(N_SITES, dtype=torch.complex128)
    with pytest.raises(ValueError, match="real parameters"):
        flax_ansatz.FFN(n_sites=N_SITES, param_dtype=jnp.complex128).init(
            jax.random.key(0), jnp.zeros((1, N_SITES)))


def test_hidden_units_must_be_positive():
    with pytest.raises(ValueError, match="at least one hidden unit"):
        torch_ansatz.RBM(4, alpha=0.1)
    with pytest.raises(ValueError, match="at least one hidden unit"):
        flax_ansatz.RBM(alpha=0.1).init(jax.random.key(0), jnp.zeros((1, 4)))
