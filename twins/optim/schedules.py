"""torch learning-rate schedulers as optax schedules, with torch's step timing.

torch steps a scheduler after ``optimizer.step()``: the k-th optimizer step
(k = 0, 1, ...) uses the learning rate at ``last_epoch = k``. An optax schedule
is evaluated at the number of updates done so far, which is also k, so each
schedule below is torch's learning rate as a function of ``last_epoch``.

torch computes most schedules recursively (``lr <- lr * gamma``); the closed
forms here agree with them to a few ulps per step (measured in the trajectory
parity tests).

Every schedule turns the int32 optax counter into a weakly typed float of the
default dtype first (float64 under ``jax_enable_x64``): ``optax.linear_schedule``
evaluated on the int32 counter returns float32 even under x64, which would
round the learning rate to 7 digits. The value stays weakly typed, so
``optax.inject_hyperparams`` casts it to the parameters' dtype. A strongly typed
float64 value would pass through uncast and promote float32 updates and
optimizer states to float64.
"""

import math

import jax
import jax.numpy as jnp
import optax

from twins.optim.config import SchedulerConfig


def float_count(count) -> jax.Array:
    """Return the step counter as a weakly typed float (float64 under x64)."""
    # int32 times a Python float is a weakly typed default float.
    return jnp.asarray(count) * 1.0


def _onfloat_count(schedule: optax.Schedule) -> optax.Schedule:
    # optax returns a Python float for a degenerate schedule (LinearLR with
    # total_iters 0); adding it to 0 * t gives a weakly typed array instead.
    def evaluate(count):
        t = float_count(count)
        return 0.0 * t + schedule(t)

    return evaluate


def constant(value: float) -> optax.Schedule:
    """Return a schedule that is ``value`` at every step, weakly typed."""
    return lambda count: 0.0 * float_count(count) + value


def cosine_annealing(base_lr: float, t_max: int, eta_min: float) -> optax.Schedule:
    """Return torch's ``CosineAnnealingLR``: eta_min + (base - eta_min)(1 + cos(pi t / T_max)) / 2.

    optax.cosine_decay_schedule stops at eta_min after T_max steps. torch keeps
    following the cosine, so its learning rate rises again after T_max, with
    period 2 T_max. This formula does the same.
    """
    def schedule(count):
        t = float_count(count)
        return eta_min + (base_lr - eta_min) * (1.0 + jnp.cos(math.pi * t / t_max)) / 2.0

    return schedule


def _one_cycle_phases(options) -> list[tuple[float, str, str, str, str]]:
    """Return torch's OneCycleLR phases: (end step, start lr, end lr, start and end momentum)."""
    total = options["total_steps"]
    pct = options["pct_start"]
    if options["three_phase"]:
        return [
            (float(pct * total) - 1, "initial", "max", "max", "base"),
            (float(2 * pct * total) - 2, "max", "initial", "base", "max"),
            (total - 1, "initial", "min", "max", "max"),
        ]
    return [
        (float(pct * total) - 1, "initial", "max", "max", "base"),
        (total - 1, "max", "min", "base", "max"),
    ]


def one_cycle(options, group: int, quantity: str = "lr") -> optax.Schedule:
    """Return torch's ``OneCycleLR`` learning rate (or momentum) of param group ``group``.

    optax.cosine_onecycle_schedule puts the peak at step int(pct_start * T).
    torch puts it at pct_start * T - 1 and anneals between float phase ends,
    so this follows torch's phase table directly. torch raises once the
    scheduler is stepped past total_steps; a jitted schedule cannot raise, so
    it returns NaN there, which turns the loss NaN on the next step.
    """
    def per_group(value):
        return value[group] if isinstance(value, (list, tuple)) else value

    max_lr = per_group(options["max_lr"])
    initial = max_lr / options["div_factor"]
    levels = {
        "lr": {"initial": initial, "max": max_lr, "min": initial / options["final_div_factor"]},
        "momentum": {"max": per_group(options["max_momentum"]),
                     "base": per_group(options["base_momentum"])},
    }[quantity]
    phases = _one_cycle_phases(options)
    cosine = options["anneal_strategy"] == "cos"
    total = options["total_steps"]

    def anneal(start, end, pct):
        if cosine:
            return end + (start - end) / 2.0 * (jnp.cos(math.pi * pct) + 1.0)
        return (end - start) * pct + start

    def schedule(count):
        t = float_count(count)
        value = None
        start_step = 0.0
        # Walk the phases from the last to the first, so the first phase whose
        # end is >= t wins, as in torch's loop; the last phase takes the rest.
        bounds = []
        for end_step, *_ in phases:
            bounds.append((start_step, end_step))
            start_step = end_step
        for i in reversed(range(len(phases))):
            end_step, lr_start, lr_end, m_start, m_end = phases[i]
            begin, end = bounds[i]
            start_key, end_key = (lr_start, lr_end) if quantity == "lr" else (m_start, m_end)
            phase_value = anneal(levels[start_key], levels[end_key], (t - begin) / (end - begin))
            value = phase_value if value is None else jnp.where(t <= end_step, phase_value, value)
        return jnp.where(t > total, jnp.nan, value)

    return schedule


def lr_schedule(scheduler: SchedulerConfig | None, base_lr: float, group: int) -> optax.Schedule:
    """Return param group ``group``'s learning rate under ``scheduler`` as an optax schedule."""
    if scheduler is None:
        return constant(base_lr)
    options = scheduler.options
    if scheduler.name == "StepLR":
        return _onfloat_count(optax.exponential_decay(
            base_lr, transition_steps=options["step_size"], decay_rate=options["gamma"],
            staircase=True))
    if scheduler.name == "ExponentialLR":
        return _onfloat_count(optax.exponential_decay(
            base_lr, transition_steps=1, decay_rate=options["gamma"]))
    if scheduler.name == "CosineAnnealingLR":
        return cosine_annealing(base_lr, options["T_max"], options["eta_min"])
    if scheduler.name == "LinearLR":
        return _onfloat_count(optax.linear_schedule(
            base_lr * options["start_factor"], base_lr * options["end_factor"],
            options["total_iters"]))
    if scheduler.name == "OneCycleLR":
        return one_cycle(options, group, "lr")
    raise AssertionError(f"scheduler {scheduler.name} passed validation but has no schedule")


def momentum_schedule(scheduler: SchedulerConfig | None, group: int) -> optax.Schedule | None:
    """Return the momentum (SGD, RMSprop) or beta1 (Adam) schedule, or None if constant.

    Only ``OneCycleLR(cycle_momentum=True)`` (its default) changes momentum.
    """
    if scheduler is None or scheduler.name != "OneCycleLR" or not scheduler.options["cycle_momentum"]:
        return None
    return one_cycle(scheduler.options, group, "momentum")
