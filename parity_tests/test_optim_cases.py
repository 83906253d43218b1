"""torch.optim <-> optax cases with known right values, on the toy problem, float64.

Toy problem: w0 = [0.5, -1], L(w) = 0.5 sum(s (w - t)^2), s = [1, 3], t = [1, 2].
Each case checks the value torch computes, that ``twins.optim_map`` reproduces
it, and that the naive optax port gets the wrong value stated beside it.
"""

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from twins.optim import schedules, transforms
from twins.optim.catalog import CONFIGS
from twins.optim_map import (UnsupportedOptimizerError, config_from_torch, optimizer_config,
                             torch_to_optax)
from twins.optim_naive import run_optax, run_torch
from twins.optim_torch import make_torch_optimizer

# The expected values below are written with 10 significant digits.
LISTED_ATOL = 1e-9
# Twin and torch run the same float64 formulas in a different order: a few ulps.
TWIN_ATOL = 1e-14
W0 = np.array([0.5, -1.0])


def check_config(config, expected, problem="toy", steps=3):
    """Assert torch and the optax twin both reach ``expected`` (10-digit values)."""
    torch_value = run_torch(config, problem, steps)
    twin_value = run_optax(torch_to_optax(config), problem, steps)
    np.testing.assert_allclose(torch_value, expected, rtol=0, atol=LISTED_ATOL)
    np.testing.assert_allclose(twin_value, torch_value, rtol=0, atol=TWIN_ATOL)


# Adam's weight_decay is an L2 term; AdamW's is decoupled.

def test_adam_weight_decay_is_l2():
    check_config(optimizer_config("Adam", lr=0.1, weight_decay=0.1), [0.7929196843, -0.7003914021])


def test_adamw_port_of_adam_weight_decay_is_wrong():
    naive = run_optax(optax.adamw(0.1, weight_decay=0.1))
    np.testing.assert_allclose(naive, [0.7777561599, -0.6737130226], rtol=0, atol=LISTED_ATOL)
    torch_adamw = run_torch(optimizer_config("AdamW", lr=0.1, weight_decay=0.1))
    np.testing.assert_allclose(naive, torch_adamw, rtol=0, atol=TWIN_ATOL)


def test_adam_decoupled_flag_equals_adamw():
    check_config(optimizer_config("Adam", lr=0.1, weight_decay=0.1, decoupled_weight_decay=True),
                 [0.7777561599, -0.6737130226])


# AdamW's default weight decay is 0.01 (optax 1e-4), applied before the lr scaling.

def test_adamw_default_decay_zero_gradient():
    check_config(optimizer_config("AdamW", lr=0.1), W0 * 0.999 ** 3, problem="zero")


def test_adamw_naive_defaults_zero_gradient():
    np.testing.assert_allclose(run_optax(optax.adamw(0.1), "zero"), W0 * 0.99999 ** 3,
                               rtol=0, atol=TWIN_ATOL)
    decay_after_lr = optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(0.1),
                                 optax.add_decayed_weights(0.01))
    np.testing.assert_allclose(run_optax(decay_after_lr, "zero"), [0.5151505, -1.030301],
                               rtol=0, atol=LISTED_ATOL)


def test_adamw_defaults_toy():
    check_config(optimizer_config("AdamW", lr=0.1), [0.7933786585, -0.6976886395])


def test_adamw_decay_follows_scheduled_lr():
    # lr 0.1, 0.05, 0.025: each step multiplies w by (1 - lr_t * 0.01).
    expected = W0 * (1 - 0.1 * 0.01) * (1 - 0.05 * 0.01) * (1 - 0.025 * 0.01)
    config = optimizer_config("AdamW", lr=0.1, scheduler=("ExponentialLR", {"gamma": 0.5}))
    check_config(config, expected, problem="zero")


# RMSprop puts eps outside the root, alpha 0.99, and the lr after momentum.

def test_rmsprop_eps_outside_sqrt():
    config = optimizer_config("RMSprop", lr=0.01, eps=0.01)
    check_config(config, [0.6819604962, -0.775884915])
    first_move = run_torch(config, steps=1) - W0
    np.testing.assert_allclose(np.abs(first_move), [0.0833333, 0.0989011], rtol=0, atol=1e-7)


def test_rmsprop_naive_ports():
    np.testing.assert_allclose(run_optax(optax.rmsprop(0.01, decay=0.99, eps=0.01)),
                               [0.6152263431, -0.7748319425], rtol=0, atol=LISTED_ATOL)
    np.testing.assert_allclose(run_optax(optax.rmsprop(0.01, eps=0.01)),
                               [0.563936369, -0.9265278236], rtol=0, atol=LISTED_ATOL)


def test_rmsprop_centered():
    check_config(optimizer_config("RMSprop", lr=0.01, eps=0.01, centered=True),
                 [0.6832592849, -0.7738732254])


def test_rmsprop_momentum_under_schedule():
    # ExponentialLR(0.5) gives lr 0.01, 0.005, 0.0025 on steps 1..3.
    config = optimizer_config("RMSprop", lr=0.01, eps=0.01, momentum=0.9,
                              scheduler=("ExponentialLR", {"gamma": 0.5}))
    check_config(config, [0.6885620149, -0.7724534455])


def test_rmsprop_momentum_after_lr_is_wrong():
    rms = optax.scale_by_rms(0.99, 0.01, eps_in_sqrt=False)
    # optax.exponential_decay on the int32 step counter returns a float32 lr,
    # so this naive port also rounds the lr to 7 digits.
    naive = optax.chain(rms, optax.scale_by_learning_rate(optax.exponential_decay(0.01, 1, 0.5)),
                        optax.trace(0.9))
    np.testing.assert_allclose(run_optax(naive), [0.7882794272, -0.6524606972],
                               rtol=0, atol=LISTED_ATOL)
    # With a constant lr the order does not matter.
    constant_lr = optax.chain(rms, optax.scale_by_learning_rate(0.01), optax.trace(0.9))
    ours = run_torch(optimizer_config("RMSprop", lr=0.01, eps=0.01, momentum=0.9))
    np.testing.assert_allclose(run_optax(constant_lr), ours, rtol=0, atol=TWIN_ATOL)


# SGD's first momentum buffer is the raw gradient, even with dampening.

def test_sgd_dampening_first_buffer_is_raw_gradient():
    config = optimizer_config("SGD", lr=0.1, momentum=0.9, dampening=0.5)
    check_config(config, [0.697375, 2.18375])
    first_move = run_torch(config, steps=1) - W0
    np.testing.assert_allclose(first_move, [0.05, 0.9], rtol=0, atol=TWIN_ATOL)


def test_sgd_dampening_naive_ports():
    np.testing.assert_allclose(run_optax(optax.sgd(0.1, momentum=0.9)), [0.757, 2.834],
                               rtol=0, atol=LISTED_ATOL)
    np.testing.assert_allclose(run_optax(optax.sgd(0.1 * (1 - 0.5), momentum=0.9)),
                               [0.6343125, 1.210625], rtol=0, atol=LISTED_ATOL)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_without_dampening_equals_optax_sgd(nesterov):
    torch_value = run_torch(optimizer_config("SGD", lr=0.1, momentum=0.9, nesterov=nesterov))
    optax_value = run_optax(optax.sgd(0.1, momentum=0.9, nesterov=nesterov))
    np.testing.assert_allclose(optax_value, torch_value, rtol=0, atol=TWIN_ATOL)


# Adagrad's accumulator starts at 0, eps 1e-10 outside the root.

def test_adagrad_accumulator_and_eps():
    config = optimizer_config("Adagrad", lr=0.1)
    check_config(config, [0.7091008232, -0.7743593459])
    first_move = run_torch(config, steps=1) - W0
    np.testing.assert_allclose(np.abs(first_move), [0.1, 0.1], rtol=0, atol=LISTED_ATOL)


def test_adagrad_naive_port():
    np.testing.assert_allclose(run_optax(optax.adagrad(0.1)), [0.6863663823, -0.7744539513],
                               rtol=0, atol=LISTED_ATOL)


# clip_grad_norm_ divides by (norm + 1e-6).

CLIP_CASES = [
    ([3.0, 4.0], 1.0, [0.59999988, 0.79999984]),
    ([0.012, 0.016], 0.01, [0.005999700015, 0.00799960002]),
    ([0.6, 0.8], 1.0, [0.5999994, 0.7999992]),
]


@pytest.mark.parametrize("grad, max_norm, expected", CLIP_CASES)
def test_clip_grad_norm_torch_eps(grad, max_norm, expected):
    tensor = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    tensor.grad = torch.tensor(grad, dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_([tensor], max_norm)
    np.testing.assert_allclose(tensor.grad.numpy(), expected, rtol=0, atol=LISTED_ATOL)

    clip = transforms.clip_by_global_norm_torch(max_norm)
    clipped, _ = clip.update({"g": jnp.asarray(grad)}, clip.init(None))
    np.testing.assert_allclose(np.asarray(clipped["g"]), tensor.grad.numpy(), rtol=0, atol=TWIN_ATOL)


def test_optax_clip_leaves_threshold_unchanged():
    clip = optax.clip_by_global_norm(1.0)
    clipped, _ = clip.update({"g": jnp.asarray([0.6, 0.8])}, clip.init(None))
    np.testing.assert_array_equal(np.asarray(clipped["g"]), [0.6, 0.8])


def test_clip_grad_norm_over_several_leaves():
    grads = {"a": jnp.asarray([3.0, -4.0]), "b": jnp.asarray([[12.0]])}
    clip = transforms.clip_by_global_norm_torch(2.0)
    clipped, _ = clip.update(grads, clip.init(None))
    # global norm sqrt(9 + 16 + 144) = 13
    scale = 2.0 / (13.0 + 1e-6)
    np.testing.assert_allclose(np.asarray(clipped["a"]), [3.0 * scale, -4.0 * scale], rtol=1e-15)
    np.testing.assert_allclose(np.asarray(clipped["b"]), [[12.0 * scale]], rtol=1e-15)


# Complex parameters: jax.grad conjugates; torch keeps moments per real component.

def test_jax_grad_is_conjugate_of_torch_grad():
    z = torch.tensor(3.0 + 4.0j, dtype=torch.complex128, requires_grad=True)
    (z.real ** 2 + z.imag ** 2).backward()
    assert complex(z.grad) == 6.0 + 8.0j
    assert complex(jax.grad(lambda z: jnp.abs(z) ** 2)(jnp.asarray(3.0 + 4.0j))) == 6.0 - 8.0j


def test_complex_sgd_step():
    config = optimizer_config("SGD", lr=0.1)
    check_config(config, 2.4 + 3.2j, problem="complex", steps=1)
    z1 = complex(run_optax(torch_to_optax(config), "complex", 1))
    assert abs(z1) ** 2 == pytest.approx(16.0, abs=1e-12)


def test_complex_sgd_on_raw_jax_grad_is_wrong():
    z1 = complex(run_optax(optax.sgd(0.1), "complex", 1))
    assert z1 == pytest.approx(2.4 + 4.8j, abs=1e-12)
    assert abs(z1) ** 2 == pytest.approx(28.8, abs=1e-12)


def test_complex_adam_per_component_moments():
    check_config(optimizer_config("Adam", lr=0.1), 2.700381523 + 3.700273844j, problem="complex")
    conjugated = optax.chain(optax.stateless(lambda u, p: jax.tree.map(jnp.conj, u)), optax.adam(0.1))
    naive = complex(run_optax(conjugated, "complex"))
    assert naive == pytest.approx(2.820127975 + 3.760170633j, abs=LISTED_ATOL)


@pytest.mark.parametrize("name", ["sgd_dampening", "adam_amsgrad", "rmsprop_centered_mom",
                                  "adagrad", "sgd_clip", "adam_onecycle_3phase"])
def test_complex_matches_torch_for_every_rule(name):
    config = CONFIGS[name]
    np.testing.assert_allclose(run_optax(torch_to_optax(config), "complex", 10),
                               run_torch(config, "complex", 10), rtol=1e-13)


def test_complex_without_conjugation_for_torch_convention_grads():
    tx = torch_to_optax("Adam", lr=0.1, conjugate_complex_grads=False)
    params = {"w": jnp.asarray(3.0 + 4.0j)}
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update({"w": 2 * params["w"]}, state, params)  # dL/dx + i dL/dy
        params = optax.apply_updates(params, updates)
    assert complex(params["w"]) == pytest.approx(2.700381523 + 3.700273844j, abs=LISTED_ATOL)


# Schedulers: torch's lr at last_epoch = k drives the k-th step.

SCHEDULER_CASES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.01}),
    ("LinearLR", {"start_factor": 0.25, "end_factor": 0.75, "total_iters": 6}),
    ("LinearLR", {"total_iters": 0}),
    ("OneCycleLR", {"max_lr": 0.3, "total_steps": 20}),
    ("OneCycleLR", {"max_lr": 0.3, "total_steps": 17, "pct_start": 0.45, "three_phase": True,
                    "anneal_strategy": "linear"}),
]


@pytest.mark.parametrize("name, options", SCHEDULER_CASES, ids=lambda v: str(v))
def test_schedule_equals_torch_lr(name, options):
    config = optimizer_config("SGD", lr=0.2, momentum=0.9, scheduler=(name, options))
    torch_step = make_torch_optimizer(config, [("w", torch.nn.Parameter(torch.zeros(1)))])
    steps = options.get("total_steps", 20)
    torch_lrs, torch_momenta = [], []
    for _ in range(steps):
        torch_lrs.append(torch_step.optimizer.param_groups[0]["lr"])
        torch_momenta.append(torch_step.optimizer.param_groups[0]["momentum"])
        torch_step.optimizer.step()
        torch_step.scheduler.step()
    lr = schedules.lr_schedule(config.scheduler, 0.2, 0)
    ours = [float(lr(jnp.asarray(k, jnp.int32))) for k in range(steps)]
    np.testing.assert_allclose(ours, torch_lrs, rtol=1e-14, atol=1e-17)
    momentum = schedules.momentum_schedule(config.scheduler, 0)
    if momentum is not None:
        ours = [float(momentum(jnp.asarray(k, jnp.int32))) for k in range(steps)]
        np.testing.assert_allclose(ours, torch_momenta, rtol=1e-14)


def test_cosine_annealing_rises_after_t_max():
    lr = schedules.lr_schedule(optimizer_config(
        "SGD", scheduler=("CosineAnnealingLR", {"T_max": 4})).scheduler, 1.0, 0)
    assert float(lr(jnp.int32(4))) == pytest.approx(0.0, abs=1e-16)
    assert float(lr(jnp.int32(6))) == pytest.approx(0.5)
    # optax.cosine_decay_schedule stays at its floor instead.
    assert float(optax.cosine_decay_schedule(1.0, 4)(6)) == 0.0


def test_one_cycle_past_total_steps_is_nan():
    lr = schedules.lr_schedule(optimizer_config(
        "SGD", scheduler=("OneCycleLR", {"max_lr": 0.1, "total_steps": 10})).scheduler, 0.1, 0)
    assert math.isfinite(float(lr(jnp.int32(10))))
    assert math.isnan(float(lr(jnp.int32(11))))


# Hyperparameter and schedule dtypes under x64.

def test_optax_linear_schedule_on_int32_counter_is_float32():
    """The trap the schedules avoid: an int32 counter yields a float32 lr even under x64."""
    assert optax.linear_schedule(0.1, 1.0, 5)(jnp.zeros([], jnp.int32)).dtype == jnp.float32


@pytest.mark.parametrize("name, options", SCHEDULER_CASES, ids=lambda v: str(v))
def test_schedule_dtype_is_float64(name, options):
    config = optimizer_config("Adam", scheduler=(name, options))
    counter = jnp.zeros([], jnp.int32)
    lr = schedules.lr_schedule(config.scheduler, 0.1, 0)(counter)
    assert lr.dtype == jnp.float64
    # Weakly typed, so inject_hyperparams casts it to float32 for float32 parameters.
    assert lr.weak_type
    momentum = schedules.momentum_schedule(config.scheduler, 0)
    if momentum is not None:
        assert momentum(counter).dtype == jnp.float64
        assert momentum(counter).weak_type


def _hyperparams(state):
    """Yield every ``hyperparams`` dict of the ``inject_hyperparams`` states in ``state``."""
    found = []

    def visit(node):
        if isinstance(node, optax.InjectStatefulHyperparamsState):
            found.append(node.hyperparams)
        return node

    jax.tree.map(visit, state, is_leaf=lambda n: isinstance(n, optax.InjectStatefulHyperparamsState))
    return found


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_hyperparameter_and_state_dtypes(name, dtype):
    tx = torch_to_optax(CONFIGS[name])
    params = {"net": {"kernel": jnp.ones((2, 3), dtype), "bias": jnp.ones(3, dtype)}}
    grads = jax.tree.map(lambda p: 0.1 * p, params)
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    updates, state_after = tx.update(grads, state, params)
    hyperparams = _hyperparams(state_after)
    assert hyperparams, "every param group injects at least the learning rate"
    for group in hyperparams:
        assert group["learning_rate"].dtype == dtype, group
        for value in group.values():
            assert value.dtype == dtype, group
    for leaf in jax.tree.leaves(updates):
        assert leaf.dtype == dtype
    # The state keeps its dtypes from step to step, so a jitted step never retraces.
    before = jax.tree.map(lambda x: x.dtype, state)
    after = jax.tree.map(lambda x: x.dtype, state_after)
    assert before == after


def test_injected_learning_rate_follows_schedule():
    tx = torch_to_optax("SGD", lr=0.1, scheduler=("StepLR", {"step_size": 2, "gamma": 0.5}))
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    seen = []
    for _ in range(5):
        _, state = tx.update(params, state, params)
        seen.append(float(_hyperparams(state)[0]["learning_rate"]))
    # The state contains the lr of the update just done, as torch's
    # get_last_lr() before scheduler.step().
    assert seen == [0.1, 0.1, 0.05, 0.05, 0.025]


# Configuration errors name the option.

@pytest.mark.parametrize("call, fragment", [
    (lambda: optimizer_config("LBFGS"), "'LBFGS'"),
    (lambda: optimizer_config("Adam", lr=0.1, nesterov=True), "'nesterov'"),
    (lambda: optimizer_config("SGD", [{"params": ["*bias"], "betas": (0.9, 0.9)}]), "'betas'"),
    (lambda: optimizer_config("SGD", scheduler=("CyclicLR", {})), "'CyclicLR'"),
    (lambda: optimizer_config("SGD", scheduler=("StepLR", {"step_size": 2, "last_epoch": 3})),
     "last_epoch"),
    (lambda: optimizer_config("SGD", scheduler=("StepLR", {"step_size": 2, "verbose_lr": 3})),
     "'verbose_lr'"),
    (lambda: optimizer_config("Adagrad", scheduler=("OneCycleLR", {"max_lr": 0.1, "total_steps": 5})),
     "cycle_momentum"),
    (lambda: optimizer_config("SGD", max_grad_norm=1.0, grad_norm_type=0.0), "grad_norm_type"),
])
def test_unsupported_option_is_named(call, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        call()


def test_unsupported_error_type():
    with pytest.raises(UnsupportedOptimizerError):
        torch_to_optax("Adam", lr=0.1, foo=1)


@pytest.mark.parametrize("options, fragment", [
    ({"lr": -0.1}, "lr"),
    ({"momentum": 0.0, "nesterov": True}, "nesterov"),
    ({"momentum": 0.9, "dampening": 0.1, "nesterov": True}, "nesterov"),
])
def test_invalid_values_rejected_like_torch(options, fragment):
    with pytest.raises(ValueError):
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], **options)
    with pytest.raises(ValueError, match=fragment):
        optimizer_config("SGD", **options)


def test_invalid_beta_rejected():
    with pytest.raises(ValueError, match="beta2"):
        optimizer_config("Adam", betas=(0.9, 1.0))


def test_overlapping_param_groups_rejected():
    config = optimizer_config("SGD", [{"params": ["*bias"]}, {"params": ["net.*"]}])
    with pytest.raises(ValueError, match="net.0.bias"):
        config.assign_groups(["net.0.bias"])


def test_implementation_flags_accepted():
    config = optimizer_config("Adam", lr=0.1, foreach=False, capturable=False, fused=None)
    assert "foreach" not in config.hyperparameters


def test_param_group_without_params_rejected():
    with pytest.raises(ValueError, match="'params'"):
        optimizer_config("SGD", [{"lr": 0.1}])


# Reading a live torch optimizer.

@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_from_torch_round_trip(name):
    config = CONFIGS[name]
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    stepper = make_torch_optimizer(config, model.named_parameters())
    read = config_from_torch(stepper.optimizer, model.named_parameters(), stepper.scheduler,
                             max_grad_norm=config.max_grad_norm,
                             grad_norm_type=config.grad_norm_type)
    assert read.name == config.name
    assert read.max_grad_norm == config.max_grad_norm
    names = [n for n, _ in model.named_parameters()]
    # The groups may be spelled differently (patterns vs names) but hold the same parameters.
    assert read.assign_groups(names) == config.assign_groups(names) or not config.param_groups
    one_cycle = config.scheduler is not None and config.scheduler.name == "OneCycleLR"
    for ours, theirs in zip(read.group_hyperparameters(), config.group_hyperparameters()):
        for key, value in theirs.items():
            if one_cycle and key == "lr" and len(config.param_groups) > 1:
                continue  # OneCycleLR overwrote each group's lr, and its schedule ignores it
            np.testing.assert_allclose(np.asarray(ours[key], float), np.asarray(value, float),
                                       rtol=1e-15, err_msg=key)
    if config.scheduler is not None:
        assert read.scheduler.name == config.scheduler.name
        for key, value in config.scheduler.options.items():
            got = read.scheduler.options[key]
            if isinstance(value, (bool, str)) or value is None:
                assert got == value, key
            else:
                np.testing.assert_allclose(np.asarray(got, float), np.asarray(value, float),
                                           rtol=1e-15, err_msg=key)


def test_config_from_torch_rejects_stepped_scheduler():
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2)
    optimizer.step()
    scheduler.step()
    with pytest.raises(ValueError, match="stepped"):
        config_from_torch(optimizer, [("p", p)], scheduler)


def test_config_from_torch_needs_names():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="named_parameters"):
        config_from_torch(torch.optim.SGD([p], lr=0.1), [])


def test_optim_map_does_not_import_torch():
    """Flax training code imports the mapping, so it must not pull torch in."""
    code = "import sys, twins.optim_map, twins.optim.catalog; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
