"""Parity tolerances, as the maximum relative error per leaf, with their reasons.

The relative error of a leaf is max|ours - reference| / max|reference|: an error
scaled by the leaf's largest entry, so entries that happen to be near zero do
not dominate.
"""

import numpy as np

# Same IEEE operations on both sides; only the order of summation and of
# fused operations differs, a few ulps each, compounded over a few layers.
FLOAT64_FORWARD = 1e-12
FLOAT64_GRAD = 1e-12
# 100 optimizer steps compound each step's few-ulp difference; measured worst
# ratio is far below this on every example.
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
