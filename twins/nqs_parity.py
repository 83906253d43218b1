"""Parity rows for the neural-quantum-state twins, for ``twins parity``.

Each case builds a torch ansatz and copies its weights into the Flax twin. The
checks use the exact estimator, a sum over all 2^N configurations, so there is
no sampling noise. They compare log psi on random configurations, the energy
and its gradient, the SR direction, and a training trajectory (energy and every
parameter at every step).
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import optax
import torch

from flax_impl import vmc as flax_vmc
from torch_impl import vmc as torch_vmc
from twins import nqs_pairs
from twins.hamiltonians import Heisenberg, TransverseFieldIsing
from twins.lattice import chain
from twins.parity import ParityRow
from twins.tolerances import nqs_tolerance

N_SITES = 8
DIAG_SHIFT = 0.01
# Value checks scale NetKet's N(0, 0.01^2) RBM init by this factor so that log
# cosh leaves its quadratic regime; at the raw init |log psi| is ~0.04, below
# the O(1) terms (log 2) that the stable formula cancels, and a relative error
# would measure that cancellation instead of the twins. Trajectories start
# from the raw init.
VALUE_SCALE = 30.0
LEARNING_RATE = {"sgd_sr": 0.05, "adam": 0.01}
# 200 steps in float64; float32 SR steps pass the solve's ~1e-4 rounding on,
# so its trajectory is compared over 50 steps, where the tolerance was measured.
TRAJECTORY_STEPS = {np.dtype(np.float64): 200, np.dtype(np.float32): 50}


@dataclass(frozen=True)
class NQSCase:
    """An ansatz on a Hamiltonian, trained with one optimizer."""

    name: str
    hamiltonian: Callable
    build: Callable  # (real dtype, weight scale) -> (torch model, Flax model, Flax params)
    optimizer: str  # "sgd_sr" (plain SGD on the SR direction) or "adam"


def _torch_dtype(dtype, complex_params: bool) -> torch.dtype:
    key = (np.dtype(dtype).name, "complex" if complex_params else "real")
    return nqs_pairs.TORCH_DTYPES[key]


CASES = {
    case.name: case
    for case in [
        NQSCase("rbm", lambda: TransverseFieldIsing(chain(N_SITES)),
                lambda dtype, scale: nqs_pairs.rbm_pair(N_SITES, _torch_dtype(dtype, False), scale=scale),
                "sgd_sr"),
        NQSCase("rbm_complex", lambda: Heisenberg(chain(N_SITES)),
                lambda dtype, scale: nqs_pairs.rbm_pair(N_SITES, _torch_dtype(dtype, True), scale=scale),
                "adam"),
        NQSCase("ffn", lambda: Heisenberg(chain(N_SITES)),
                # The FFN keeps torch's Linear init, whose outputs are already O(1).
                lambda dtype, scale: nqs_pairs.ffn_pair(N_SITES, _torch_dtype(dtype, False), alpha=1),
                "adam"),
    ]
}


def _row(case, check, dtype, errors: dict[str, tuple[float, float]], tolerance_key=None) -> ParityRow:
    worst = max(errors, key=lambda k: errors[k][1])
    tol = nqs_tolerance(dtype, tolerance_key or check.split(":")[0])
    max_rel = errors[worst][1]
    return ParityRow(case.name, check, np.dtype(dtype).name, "cpu",
                     max(e[0] for e in errors.values()), max_rel, tol, bool(max_rel <= tol), worst)


def _errors(ours: dict, reference: dict) -> dict[str, tuple[float, float]]:
    errors = {}
    for name, expected in reference.items():
        expected = np.asarray(expected, dtype=np.complex128)
        difference = float(np.max(np.abs(np.asarray(ours[name], dtype=np.complex128) - expected)))
        errors[name] = (difference, difference / max(float(np.max(np.abs(expected))), np.finfo(float).tiny))
    return errors


def check_log_psi(case: NQSCase, dtype=np.float64) -> ParityRow:
    """Compare log psi on 64 random configurations, imaginary parts modulo 2 pi."""
    torch_model, flax_model, params = case.build(dtype, VALUE_SCALE)
    s = nqs_pairs.configurations(N_SITES, 64)
    with torch.no_grad():
        log_psi_torch = torch_model(torch.as_tensor(s)).numpy()
    log_psi_flax = np.asarray(flax_model.apply({"params": params}, s.astype(dtype)))
    difference = float(np.max(nqs_pairs.wrapped_difference(log_psi_flax, log_psi_torch)))
    scale = float(np.max(np.abs(log_psi_torch)))
    return _row(case, "log_psi", dtype, {"log_psi": (difference, difference / scale)})


def _estimates(case: NQSCase, dtype):
    hamiltonian = case.hamiltonian()
    torch_model, flax_model, params = case.build(dtype, VALUE_SCALE)
    torch_estimate = torch_vmc.exact_estimate(torch_model, hamiltonian, diag_shift=DIAG_SHIFT)
    flax_estimate = flax_vmc.exact_estimate(flax_model, params, hamiltonian, diag_shift=DIAG_SHIFT)
    return torch_estimate, flax_estimate, params


def check_energy_grad(case: NQSCase, dtype=np.float64) -> list[ParityRow]:
    """Compare the exact energy, its gradient, and the SR direction, leaf by leaf."""
    torch_estimate, flax_estimate, params = _estimates(case, dtype)
    gradient = _errors(
        {"energy": flax_estimate.energy, **nqs_pairs.flat_params(flax_estimate.gradient)},
        {"energy": torch_estimate.energy, **nqs_pairs.torch_to_flat(torch_estimate.gradient, params)})
    direction = _errors(nqs_pairs.flat_params(flax_estimate.direction),
                        nqs_pairs.torch_to_flat(torch_estimate.direction, params))
    return [_row(case, "energy_grad", dtype, gradient), _row(case, "sr_direction", dtype, direction)]


def _optimizers(case: NQSCase, torch_model, complex_params: bool):
    lr = LEARNING_RATE[case.optimizer]
    if case.optimizer == "sgd_sr":
        return torch.optim.SGD(torch_model.parameters(), lr=lr), optax.sgd(lr), DIAG_SHIFT
    optimizer = optax.adam(lr)
    if complex_params:
        # torch's Adam keeps separate moments for the real and imaginary parts.
        optimizer = optax.contrib.split_real_and_imaginary(optimizer)
    return torch.optim.Adam(torch_model.parameters(), lr=lr), optimizer, None


def check_trajectory(case: NQSCase, dtype=np.float64) -> ParityRow:
    """Train both twins with the exact estimator; compare energy and parameters at every step."""
    hamiltonian = case.hamiltonian()
    torch_model, flax_model, params = case.build(dtype, 1.0)
    complex_params = any(p.is_complex() for p in torch_model.parameters())
    torch_optimizer, optax_optimizer, diag_shift = _optimizers(case, torch_model, complex_params)
    steps = TRAJECTORY_STEPS[np.dtype(dtype)]

    torch_run = torch_vmc.train_exact(torch_model, torch_optimizer, hamiltonian, steps, diag_shift=diag_shift)
    flax_run = flax_vmc.train_exact(flax_model, optax_optimizer, params, hamiltonian, steps,
                                    diag_shift=diag_shift)
    ours = {"energy": flax_run.energies, **nqs_pairs.flat_params(flax_run.params)}
    reference = {"energy": torch_run.energies, **nqs_pairs.torch_batched_to_flat(torch_run.params)}
    return _row(case, f"trajectory:{case.optimizer}", dtype, _errors(ours, reference))


def run_nqs_matrix(cases=None, dtypes=(np.float64, np.float32)) -> list[ParityRow]:
    """Run every NQS check for every case and dtype, on the CPU."""
    rows = []
    for name in cases or CASES:
        case = CASES[name]
        for dtype in dtypes:
            rows.append(check_log_psi(case, dtype))
            rows.extend(check_energy_grad(case, dtype))
            rows.append(check_trajectory(case, dtype))
    return rows
