"""Parity tolerances, as the maximum relative error per leaf, with their reasons.

The relative error of a leaf is max|ours - reference| / max|reference|: an error
scaled by the leaf's largest entry, so entries that happen to be near zero do
not dominate.
"""

import numpy as np

# Same IEEE operations on both sides, and only the order of summation and of
# fused operations differs: a few ulps each, compounded over a few layers.
FLOAT64_FORWARD = 1e-12
FLOAT64_GRAD = 1e-12
# 100 optimizer steps compound each step's few-ulp difference. Measured worst
# on CPU: 1.0e-15 (MLP, SGD with momentum), 1.7e-14 over the optimizer-mapping
# configurations.
FLOAT64_TRAJECTORY = 1e-12

# float32 eps is 1.2e-7; a dot product of up to 16 terms and a batch mean of 32
# terms give a few tens of ulps.
FLOAT32_FORWARD = 1e-5
FLOAT32_GRAD = 1e-5
# 100 steps compound each step's rounding; Adam's division by sqrt(v) + eps
# amplifies relative differences in small gradients, and gradient ascent
# (maximize) amplifies them further. Measured worst on CPU: 6.4e-7 for the
# default SGD/Adam pair (MLP), 5.7e-6 over the optimizer-mapping
# configurations (AdamW, amsgrad, maximize; MLP).
FLOAT32_TRAJECTORY = 1e-5

_TOLERANCES = {
    (np.dtype(np.float64), "forward"): FLOAT64_FORWARD,
    (np.dtype(np.float64), "grad"): FLOAT64_GRAD,
    (np.dtype(np.float64), "trajectory"): FLOAT64_TRAJECTORY,
    (np.dtype(np.float32), "forward"): FLOAT32_FORWARD,
    (np.dtype(np.float32), "grad"): FLOAT32_GRAD,
    (np.dtype(np.float32), "trajectory"): FLOAT32_TRAJECTORY,
}


def tolerance(dtype, check: str) -> float:
    """Return the relative tolerance for ``check`` ("forward", "grad", "trajectory")."""
    return _TOLERANCES[(np.dtype(dtype), check)]

# --- neural quantum states (exact summation over 2^N configurations) ---------

# log psi and E_loc: same IEEE operations, summed in a different order.
# Measured worst: 4.2e-16 (log psi), 1.1e-15 (E_loc), 2.4e-15 (gradient).
NQS_FLOAT64_VALUE = 1e-12
# The SR solve multiplies rounding by the condition number of S + shift (up to
# ~1e3 with shift 0.01). Measured worst: 3.1e-13.
NQS_FLOAT64_SR = 1e-10
# Each step passes the SR solve's ~1e-13 difference on to the next. Measured
# worst over 200 steps: 7.1e-12 (SGD + SR), 4.7e-14 (Adam).
NQS_FLOAT64_TRAJECTORY = 1e-10
# float32 eps is 1.2e-7. Measured worst: 4.1e-7 (log psi, complex RBM),
# 3.3e-7 (E_loc, which multiplies exp of a log psi difference).
NQS_FLOAT32_VALUE = 5e-6
# A sum of 2^N centred products with cancellation in E_loc - E. Measured
# worst: 1.3e-6.
NQS_FLOAT32_GRADIENT = 2e-5
# float32 eps times the condition number (~1e3) of S + 0.01 I. Measured
# worst: 1.8e-4.
NQS_FLOAT32_SR = 1e-3
# 50 steps in float32, each passing the previous step's rounding on (the SR
# solve's ~1e-4, or Adam's division by sqrt(v)). Measured worst: 3.2e-4
# (RBM, SGD + SR, parameters), 2.7e-4 (complex RBM, Adam), 4.9e-7 (energies).
NQS_FLOAT32_TRAJECTORY = 2e-3

_NQS_TOLERANCES = {
    "log_psi": (NQS_FLOAT64_VALUE, NQS_FLOAT32_VALUE),
    "energy_grad": (NQS_FLOAT64_VALUE, NQS_FLOAT32_GRADIENT),
    "sr_direction": (NQS_FLOAT64_SR, NQS_FLOAT32_SR),
    "trajectory": (NQS_FLOAT64_TRAJECTORY, NQS_FLOAT32_TRAJECTORY),
}


def nqs_tolerance(dtype, check: str) -> float:
    """Return the relative tolerance of an NQS check for a real dtype (float64 or float32)."""
    float64, float32 = _NQS_TOLERANCES[check]
    return float64 if np.dtype(dtype) == np.float64 else float32
