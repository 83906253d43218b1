"""Trajectory parity of every named optimizer configuration on every registered example.

Each check trains the torch model with ``torch.optim`` (plus scheduler and
clipping) and its Flax twin with the ``twins.optim_map`` transformation for
100 full-batch steps, then compares the loss and every parameter at every step.
Each check compiles a new jitted step (about a second on a loaded 2-core
machine). So the default run covers every configuration on the MLP, the
example with the largest measured errors. ``-m slow`` adds the other examples,
and ``twins parity --optimizer all`` runs the whole matrix too.

Tolerances are ``twins.tolerances.FLOAT64_TRAJECTORY`` (1e-12) and
``FLOAT32_TRAJECTORY`` (1e-5), relative to each leaf's largest entry.
Measured worst on CPU (``twins parity --optimizer all``): float64 1.7e-14
(adam_cosine, mlp: torch's recursive cosine lr drifts 3e-14 from the closed
form); float32 5.7e-6 (adamw_amsgrad_maximize, mlp loss). Gradient ascent is
unstable, so it amplifies each step's few-ulp float32 differences. Descent
configurations stay below 3.2e-6.
"""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twins.optim import catalog
from twins.optim.config import optimizer_config
from twins.parity import check_trajectory
from twins.registry import EXAMPLES

CONFIG_NAMES = sorted(catalog.CONFIGS)
EXAMPLE_NAMES = list(EXAMPLES)
DTYPES = [np.float64, np.float32]
RANDOM_STEPS = 20


def _assert_row(row):
    assert row.passed, (
        f"{row.example} {row.check} {row.dtype}: leaf {row.worst} has relative error "
        f"{row.max_rel:.3e} (abs {row.max_abs:.3e}) > tolerance {row.tolerance:.0e}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_trajectory_mlp(config, dtype):
    _assert_row(check_trajectory(EXAMPLES["mlp"], config, dtype))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("example", [e for e in EXAMPLE_NAMES if e != "mlp"])
@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_trajectory_other_examples(config, example, dtype):
    _assert_row(check_trajectory(EXAMPLES[example], config, dtype))


def test_trajectory_detects_wrong_mapping(monkeypatch):
    """A configuration whose optax side differs by one option must fail the check."""
    import twins.parity

    torch_side = catalog.CONFIGS["sgd_dampening"]
    wrong = optimizer_config("SGD", lr=0.05, momentum=0.9)  # dampening dropped
    real_build = twins.parity.build_transformation
    monkeypatch.setitem(catalog.CONFIGS, "dampening_dropped", torch_side)
    monkeypatch.setattr(twins.parity, "build_transformation",
                        lambda config: real_build(wrong))
    row = check_trajectory(EXAMPLES["tiny_linear"], "dampening_dropped", np.float64, steps=5)
    assert not row.passed


# Randomized hyperparameters, each drawn from the range torch accepts.

lr = st.floats(1e-4, 0.1)
weight_decay = st.one_of(st.just(0.0), st.floats(1e-4, 0.1))
beta = st.floats(0.0, 0.999)
eps = st.floats(1e-10, 1e-2)


@st.composite
def sgd(draw):
    momentum = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.99)))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.floats(0.0, 1.0))
    return {"lr": draw(lr), "momentum": momentum, "dampening": dampening,
            "weight_decay": draw(weight_decay), "nesterov": nesterov,
            "maximize": draw(st.booleans())}


@st.composite
def adam(draw):
    return {"lr": draw(lr), "betas": (draw(beta), draw(beta)), "eps": draw(eps),
            "weight_decay": draw(weight_decay), "amsgrad": draw(st.booleans()),
            "maximize": draw(st.booleans())}


@st.composite
def rmsprop(draw):
    centered = draw(st.booleans())
    # Centered RMSprop takes sqrt(v - m^2). With alpha near 0 that difference is
    # a rounding error of either sign, and torch itself returns NaN (the twin
    # does too), so centered draws keep alpha >= 0.1.
    alpha = draw(st.floats(0.1 if centered else 0.0, 0.999))
    # Centered ascent is ill-conditioned (see test_centered_rmsprop_ascent_diverges).
    maximize = not centered and draw(st.booleans())
    return {"lr": draw(st.floats(1e-4, 0.01)), "alpha": alpha,
            "eps": draw(eps), "weight_decay": draw(weight_decay),
            "momentum": draw(st.one_of(st.just(0.0), st.floats(0.0, 0.99))),
            "centered": centered, "maximize": maximize}


@st.composite
def adagrad(draw):
    return {"lr": draw(lr), "lr_decay": draw(st.floats(0.0, 0.5)),
            "weight_decay": draw(weight_decay),
            "initial_accumulator_value": draw(st.floats(0.0, 1.0)), "eps": draw(eps),
            "maximize": draw(st.booleans())}


SCHEDULERS = st.one_of(
    st.none(),
    st.tuples(st.just("StepLR"), st.fixed_dictionaries(
        {"step_size": st.integers(1, 10), "gamma": st.floats(0.1, 1.0)})),
    st.tuples(st.just("ExponentialLR"), st.fixed_dictionaries({"gamma": st.floats(0.8, 1.0)})),
    st.tuples(st.just("CosineAnnealingLR"), st.fixed_dictionaries(
        {"T_max": st.integers(1, 30), "eta_min": st.floats(0.0, 1e-3)})),
    st.tuples(st.just("LinearLR"), st.fixed_dictionaries(
        {"start_factor": st.floats(0.01, 1.0), "end_factor": st.floats(0.0, 1.0),
         "total_iters": st.integers(0, 30)})),
    st.tuples(st.just("OneCycleLR"), st.fixed_dictionaries(
        {"max_lr": st.floats(1e-3, 0.05), "total_steps": st.integers(RANDOM_STEPS, 40),
         "pct_start": st.floats(0.05, 0.95), "anneal_strategy": st.sampled_from(["cos", "linear"]),
         "three_phase": st.booleans(), "base_momentum": st.floats(0.5, 0.85),
         "max_momentum": st.floats(0.85, 0.99)})),
)


@st.composite
def configurations(draw):
    name, strategy = draw(st.sampled_from(
        [("SGD", sgd()), ("Adam", adam()), ("AdamW", adam()), ("RMSprop", rmsprop()),
         ("Adagrad", adagrad())]))
    hyperparameters = draw(strategy)
    scheduler = draw(SCHEDULERS)
    if scheduler is not None and scheduler[0] == "OneCycleLR" and name == "Adagrad":
        scheduler = (scheduler[0], {**scheduler[1], "cycle_momentum": False})
    max_grad_norm = draw(st.one_of(st.none(), st.floats(0.01, 10.0)))
    norm_type = draw(st.sampled_from([2.0, 1.0, math.inf]))
    groups = draw(st.one_of(st.none(), st.just([{"params": ["*bias"], "weight_decay": 0.0},
                                                {"params": ["*weight"]}])))
    return optimizer_config(name, groups, scheduler=scheduler, max_grad_norm=max_grad_norm,
                            grad_norm_type=norm_type, **hyperparameters)


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(config=configurations())
def test_random_hyperparameters_match(config):
    """20 float64 steps on the Linear example for hyperparameters drawn in torch's valid range."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(catalog.CONFIGS, "drawn", config)
        row = check_trajectory(EXAMPLES["tiny_linear"], "drawn", np.float64, steps=RANDOM_STEPS)
    assert row.passed, f"{config}: leaf {row.worst} relative error {row.max_rel:.3e}"


@pytest.mark.xfail(strict=True, reason=(
    "centered RMSprop divides by sqrt(v - m^2); under gradient ascent with clipping the "
    "gradient barely changes between steps, so v - m^2 cancels and amplifies the few-ulp "
    "rounding differences between torch's kernel and optax's: measured 2.5e-12 relative "
    "after 20 float64 steps; without centering the two runs are bitwise equal"))
def test_centered_rmsprop_ascent_diverges():
    config = optimizer_config("RMSprop", lr=0.0078125, alpha=0.25, eps=0.0078125, centered=True,
                              maximize=True, max_grad_norm=1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(catalog.CONFIGS, "centered_ascent", config)
        row = check_trajectory(EXAMPLES["tiny_linear"], "centered_ascent", np.float64,
                               steps=RANDOM_STEPS)
    _assert_row(row)


def test_cli_optimizer_shows_trajectory_rows(tmp_path, capsys):
    from twins.cli import main

    path = tmp_path / "rows.json"
    status = main(["parity", "--optimizer", "sgd_dampening", "--example", "scale",
                   "--dtype", "float64", "--json", str(path)])
    assert status == 0
    assert "trajectory:sgd_dampening" in capsys.readouterr().out
    rows = json.loads(path.read_text())
    assert [row["check"] for row in rows] == ["trajectory:sgd_dampening"]
    assert rows[0]["passed"]


def test_cli_rejects_unknown_optimizer(capsys):
    from twins.cli import main

    with pytest.raises(SystemExit):
        main(["parity", "--optimizer", "LBFGS"])
    assert "invalid choice" in capsys.readouterr().err
