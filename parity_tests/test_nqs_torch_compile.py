"""``torch_impl.vmc.estimate(compile=True)`` against the eager estimate it compiles.

The compiled statistics must give the eager values on every local-energy path
(flip-ratio, plain, complex), follow the weights when they move to another
path between calls, and leave the SR fallback to the host.
"""

import warnings

import numpy as np
import pytest
import torch

import torch_impl.vmc as torch_vmc
from parity_tests.test_nqs_sampler import _rbm_pair
from twins.hamiltonians import TransverseFieldIsing
from twins.lattice import chain

N_SITES = 6
HAMILTONIAN = TransverseFieldIsing(chain(N_SITES), J=1.0, h=0.8)
# Same ops on the same inputs. Only fusion and summation order may differ.
RTOL = 1e-12


def _configurations(seed: int, count: int = 48) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(1.0 - 2.0 * rng.integers(0, 2, size=(count, N_SITES)),
                           dtype=torch.float64)


def _assert_same(compiled: torch_vmc.Estimate, eager: torch_vmc.Estimate,
                 direction_rtol: float = RTOL) -> None:
    """Compare every field; direction entries relative to the largest of their leaf."""
    assert compiled.energy == pytest.approx(eager.energy, rel=RTOL, abs=RTOL)
    assert compiled.variance == pytest.approx(eager.variance, rel=RTOL, abs=RTOL)
    torch.testing.assert_close(compiled.e_loc, eager.e_loc, rtol=RTOL, atol=RTOL)
    for name in eager.direction:
        for field, rtol in (("gradient", RTOL), ("direction", direction_rtol)):
            expected = getattr(eager, field)[name]
            torch.testing.assert_close(getattr(compiled, field)[name], expected, rtol=rtol,
                                       atol=rtol * expected.abs().max().item())


@pytest.mark.parametrize("complex_params", [False, True], ids=["real", "complex"])
def test_compiled_estimate_matches_eager(complex_params):
    """Compare for a real RBM on both local-energy paths and for a complex RBM."""
    model, _, _ = _rbm_pair(3, N_SITES, complex_params)
    s = _configurations(4)
    eager = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=0.1)
    if complex_params:
        # Inductor falls back to eager kernels for complex tensors and warns when it
        # generates code, which a warm inductor cache skips.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Torchinductor does not support code "
                                    "generation for complex operators", category=UserWarning)
            compiled = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=0.1, compile=True)
        _assert_same(compiled, eager)
        return
    _assert_same(torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=0.1, compile=True), eager)
    # The local energy's path is chosen on the host at every call, so moving
    # the weights out of the flip-ratio bound must not reuse the old path.
    with torch.no_grad():
        model.Dense.weight[0, 0] = 1.5
    eager = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=0.1)
    _assert_same(torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=0.1, compile=True), eager)


def test_compiled_step_takes_the_eager_step():
    """Two SGD steps with ``step(compile=True)`` leave the parameters of two eager steps."""
    models = [_rbm_pair(5, N_SITES, False)[0] for _ in range(2)]
    s = _configurations(6)
    for model, compile in zip(models, (False, True)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(2):
            torch_vmc.step(model, optimizer, HAMILTONIAN, s=s, diag_shift=0.1, compile=compile)
    for eager, compiled in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(compiled, eager, rtol=RTOL, atol=RTOL)


def test_compiled_estimate_host_fallback(monkeypatch):
    """A shift below the trace bound sends the compiled estimate to the host's checked solve."""
    model, _, _ = _rbm_pair(7, N_SITES, False)
    s = _configurations(8, count=256)  # 256 samples, 48 parameters: parameter space
    shift = 1e-14  # (shift + trace S) / shift exceeds 1 / (1000 eps): not trusted
    eager = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=shift)
    solve, checked = torch_vmc.sr_direction, []

    def spy(*args):
        checked.append(args)
        return solve(*args)

    monkeypatch.setattr(torch_vmc, "sr_direction", spy)
    compiled = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=shift, compile=True)

    assert len(checked) == 1
    # S is nearly singular here (eigenvalues down to about 1e-7), and a solve
    # moves the eps-level differences of the compiled O by up to cond(S) eps.
    weights = torch.full((len(s),), 1.0 / len(s), dtype=torch.float64)
    eigenvalues = torch.linalg.eigvalsh(
        torch_vmc.sr_matrix(torch_vmc.real_jacobian(model, s), weights))
    condition = (eigenvalues[-1] / eigenvalues[0]).item()
    assert 1e3 < condition < 1e12
    _assert_same(compiled, eager, direction_rtol=condition * torch.finfo(torch.float64).eps)
