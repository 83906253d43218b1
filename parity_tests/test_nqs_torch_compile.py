"""``torch_impl.vmc.estimate(compile=True)`` against the eager estimate it compiles.

The compiled statistics must give the eager values on every local-energy path
(flip-ratio, plain, complex), follow the weights when they move to another
path between calls, and leave the SR fallback to the host as before.
"""

import numpy as np
import pytest
import torch

import torch_impl.vmc as torch_vmc
from parity_tests.test_nqs_sampler import _rbm_pair
from twins.hamiltonians import TransverseFieldIsing
from twins.lattice import chain

N_SITES = 6
HAMILTONIAN = TransverseFieldIsing(chain(N_SITES), J=1.0, h=0.8)
# Same ops on the same inputs; only fusion and summation order may differ.
RTOL = 1e-12


def _configurations(seed: int, count: int = 48) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor(1.0 - 2.0 * rng.integers(0, 2, size=(count, N_SITES)),
                           dtype=torch.float64)


def _assert_same(compiled: torch_vmc.Estimate, eager: torch_vmc.Estimate) -> None:
    assert compiled.energy == pytest.approx(eager.energy, rel=RTOL, abs=RTOL)
    assert compiled.variance == pytest.approx(eager.variance, rel=RTOL, abs=RTOL)
    torch.testing.assert_close(compiled.e_loc, eager.e_loc, rtol=RTOL, atol=RTOL)
    for name in eager.direction:
        scale = eager.direction[name].abs().max().item()
        for field in ("gradient", "direction"):
            torch.testing.assert_close(getattr(compiled, field)[name],
                                       getattr(eager, field)[name],
                                       rtol=RTOL, atol=RTOL * scale)


@pytest.mark.parametrize("complex_params", [False, True], ids=["real", "complex"])
def test_compiled_estimate_matches_eager(complex_params):
    """Real RBM on the flip-ratio path, then with a large weight on the plain path; complex RBM."""
    model, _, _ = _rbm_pair(3, N_SITES, complex_params)
    s = _configurations(4)
    eager = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=0.1)
    if complex_params:
        # Inductor falls back to eager kernels for complex tensors, and says so.
        with pytest.warns(UserWarning, match="complex operators"):
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


def test_compiled_estimate_falls_back_on_the_host():
    """A shift too small for the trace bound takes the checked solve, with its warning."""
    model, _, _ = _rbm_pair(7, N_SITES, False)
    s = _configurations(8, count=8)  # 8 samples, 48 parameters: sample space
    with pytest.warns(torch_vmc.SingularMatrixWarning, match="Y Y\\^T"):
        eager = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=1e-300)
    with pytest.warns(torch_vmc.SingularMatrixWarning, match="Y Y\\^T"):
        compiled = torch_vmc.estimate(model, HAMILTONIAN, s, diag_shift=1e-300, compile=True)
    _assert_same(compiled, eager)
