"""Forward, gradient and 100-step trajectory parity for every registered example."""

import numpy as np
import optax
import pytest

from twins.parity import OPTIMIZERS, check_forward, check_grad, check_trajectory
from twins.registry import EXAMPLES

DTYPES = [np.float64, np.float32]
EXAMPLE_NAMES = list(EXAMPLES)


def _assert_row(row):
    assert row.passed, (
        f"{row.example} {row.check} {row.dtype} on {row.device}: leaf {row.worst} has relative "
        f"error {row.max_rel:.3e} (abs {row.max_abs:.3e}) > tolerance {row.tolerance:.0e}"
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_forward_matches(name, dtype):
    _assert_row(check_forward(EXAMPLES[name], dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_grad_matches(name, dtype):
    _assert_row(check_grad(EXAMPLES[name], dtype))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_trajectory_matches(name, dtype, optimizer):
    _assert_row(check_trajectory(EXAMPLES[name], optimizer, dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda", "cpu/cuda"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_gpu_parity(name, dtype, device):
    pair = EXAMPLES[name]
    _assert_row(check_forward(pair, dtype, device))
    _assert_row(check_grad(pair, dtype, device))
    for optimizer in OPTIMIZERS:
        _assert_row(check_trajectory(pair, optimizer, dtype, device))


def test_trajectory_check_detects_divergence(monkeypatch):
    """A 1% different learning rate on the Flax side must fail the trajectory check."""
    torch_factory, _ = OPTIMIZERS["adam"]
    monkeypatch.setitem(OPTIMIZERS, "adam_wrong_lr", (torch_factory, lambda: optax.adam(0.0101)))
    row = check_trajectory(EXAMPLES["tiny_linear"], "adam_wrong_lr", np.float64, steps=5)
    assert not row.passed
    assert row.max_rel > 1e-6
