"""torch learning-rate schedulers as optax schedules, with torch's step timing.

torch steps a scheduler after ``optimizer.step()``: the k-th optimizer step
(k = 0, 1, ...) uses the learning rate at ``last_epoch = k``. An optax schedule
is evaluated at the number of updates done so far, which is also k, so each
schedule below is torch's learning rate as a function of ``last_epoch``.

torch computes most schedules recursively (``lr <- lr * gamma``); the closed
forms here agree with them to a few ulps per step (measured in the trajectory
parity tests).

Every schedule casts the int32 optax counter to the default float dtype first
(float64 under ``jax_enable_x64``): ``optax.linear_schedule`` evaluated on the
int32 counter returns float32 even under x64, which would round the learning
rate to 7 digits.
"""

import math

import jax
import jax.numpy as jnp
import optax

from twins.optim.config import SchedulerConfig


def _float_count(count) -> jax.Array:
    """Return the step counter as the default float dtype (float64 under x64)."""
    return jnp.asarray(count, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


def _on_float_count(schedule: optax.Schedule) -> optax.Schedule:
    return lambda count: schedule(_float_count(count))


def constant(value: float) -> optax.Schedule:
    """Return a schedule that is ``value`` at every step, in the default float dtype."""
    return lambda count: jnp.full((), value, dtype=_float_count(count).dtype)


def cosine_annealing(base_lr: float, t_max: int, eta_min: float) -> optax.Schedule:
    """Return torch's ``CosineAnnealingLR``: eta_min + (base - eta_min)(1 + cos(pi t / T_max)) / 2.

    optax.cosine_decay_schedule stops at eta_min after T_max steps; torch keeps
    following the cosine, so its learning rate rises again after T_max (it is
    periodic with period 2 T_max). This formula does the same.
    """
    def schedule(count):
        t = _float_count(count)
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

    optax.cosine_onecycle_schedule puts the peak at step int(pct_start * T);
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
        t = _float_count(count)
        value = jnp.full((), jnp.nan, dtype=t.dtype)
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
            take = jnp.bool_(True) if i == len(phases) - 1 else t <= end_step
            value = jnp.where(take, phase_value, value)
        return jnp.where(t > total, jnp.nan, value)

    return schedule


def lr_schedule(scheduler: SchedulerConfig | None, base_lr: float, group: int) -> optax.Schedule:
    """Return param group ``group``'s learning rate under ``scheduler`` as an optax schedule."""
    if scheduler is None:
        return constant(base_lr)
    options = scheduler.options
    if scheduler.name == "StepLR":
        return _on_float_count(optax.exponential_decay(
            base_lr, transition_steps=options["step_size"], decay_rate=options["gamma"],
            staircase=True))
    if scheduler.name == "ExponentialLR":
        return _on_float_count(optax.exponential_decay(
            base_lr, transition_steps=1, decay_rate=options["gamma"]))
    if scheduler.name == "CosineAnnealingLR":
        return cosine_annealing(base_lr, options["T_max"], options["eta_min"])
    if scheduler.name == "LinearLR":
        return _on_float_count(optax.linear_schedule(
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
