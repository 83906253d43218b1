"""A torch optimizer configuration as plain data: class name, hyperparameters, groups.

``optimizer_config("AdamW", lr=1e-3)`` stores what ``torch.optim.AdamW(params,
lr=1e-3)`` stores, with torch's defaults filled in and torch's range checks
applied. Parameters are named by their torch ``named_parameters()`` names
(``net.0.weight``), so the same configuration builds the torch optimizer and its
optax twin. ``config_from_torch`` reads one back from a live
``torch.optim.Optimizer`` without importing torch.
"""

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# torch 2.13 constructor defaults, keyword for keyword.
OPTIMIZER_DEFAULTS = {
    "SGD": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
            "nesterov": False, "maximize": False},
    "Adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
             "amsgrad": False, "maximize": False, "decoupled_weight_decay": False},
    "AdamW": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2,
              "amsgrad": False, "maximize": False},
    "RMSprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
                "centered": False, "maximize": False},
    "Adagrad": {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0,
                "initial_accumulator_value": 0.0, "eps": 1e-10, "maximize": False},
}

# Keywords that pick torch's kernel (for-loop, foreach, fused, CUDA-graph safe)
# but not the update rule, so they have no optax counterpart and are accepted.
# NOTE: the parity tests run torch's default kernel; fused kernels round differently.
IMPLEMENTATION_FLAGS = {
    "SGD": ("foreach", "differentiable", "fused"),
    "Adam": ("foreach", "capturable", "differentiable", "fused"),
    "AdamW": ("foreach", "capturable", "differentiable", "fused"),
    "RMSprop": ("foreach", "capturable", "differentiable"),
    "Adagrad": ("foreach", "differentiable", "fused"),
}

# Required options have no default (``REQUIRED``); ``last_epoch`` other than -1
# resumes a schedule midway, which a fresh optax state cannot express.
REQUIRED = object()
SCHEDULER_DEFAULTS = {
    "StepLR": {"step_size": REQUIRED, "gamma": 0.1},
    "ExponentialLR": {"gamma": REQUIRED},
    "CosineAnnealingLR": {"T_max": REQUIRED, "eta_min": 0.0},
    "LinearLR": {"start_factor": 1.0 / 3.0, "end_factor": 1.0, "total_iters": 5},
    "OneCycleLR": {"max_lr": REQUIRED, "total_steps": None, "epochs": None,
                   "steps_per_epoch": None, "pct_start": 0.3, "anneal_strategy": "cos",
                   "cycle_momentum": True, "base_momentum": 0.85, "max_momentum": 0.95,
                   "div_factor": 25.0, "final_div_factor": 1e4, "three_phase": False},
}

class UnsupportedOptimizerError(ValueError):
    """An optimizer, scheduler or option that has no exact optax mapping here."""


def _name_of(spec) -> str:
    """Return the class name of ``spec``: a name, or a class such as ``torch.optim.Adam``."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, type):
        return spec.__name__
    raise TypeError(f"expected a class name or a class, got {spec!r}")


@dataclass(frozen=True)
class ParamGroup:
    """One torch param group: which parameters, and the options that override the defaults.

    Attributes:
        patterns: torch parameter names or ``fnmatch`` patterns of them
            (``"*bias"``); a group may match no parameter, as torch allows.
        options: hyperparameters of this group that differ from the optimizer's.
    """

    patterns: tuple[str, ...]
    options: Mapping = field(default_factory=dict)

    def matches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)


@dataclass(frozen=True)
class SchedulerConfig:
    """A ``torch.optim.lr_scheduler`` class name and its options, defaults filled in."""

    name: str
    options: Mapping


@dataclass(frozen=True)
class OptimizerConfig:
    """A torch optimizer as data.

    Attributes:
        name: the ``torch.optim`` class name (``"SGD"``, ``"Adam"``, ...).
        hyperparameters: the optimizer-wide options, torch defaults filled in.
        param_groups: groups in torch's order; empty means one group with every
            parameter. A parameter in no group is not trained, as in torch.
        scheduler: the learning-rate scheduler stepped once after every
            ``optimizer.step()``, or None.
        max_grad_norm: ``clip_grad_norm_(model.parameters(), max_grad_norm)``
            before every step, or None.
        grad_norm_type: the ``norm_type`` of that clipping (2.0, inf or any p > 0).
    """

    name: str
    hyperparameters: Mapping
    param_groups: tuple[ParamGroup, ...] = ()
    scheduler: SchedulerConfig | None = None
    max_grad_norm: float | None = None
    grad_norm_type: float = 2.0

    def group_hyperparameters(self) -> list[dict]:
        """Return the full hyperparameters of each group (one entry if there are no groups)."""
        if not self.param_groups:
            return [dict(self.hyperparameters)]
        return [{**self.hyperparameters, **group.options} for group in self.param_groups]

    def assign_groups(self, names: Iterable[str]) -> dict[str, int | None]:
        """Return ``{name: group index}``; None marks a parameter that no group holds.

        Raises ValueError if two groups claim one parameter, as torch does.
        """
        assignment = {}
        for name in names:
            hits = [i for i, group in enumerate(self.param_groups) if group.matches(name)]
            if not self.param_groups:
                hits = [0]
            if len(hits) > 1:
                raise ValueError(
                    f"parameter {name!r} matches param groups {hits}; torch requires each "
                    f"parameter in at most one group, so make the patterns disjoint")
            assignment[name] = hits[0] if hits else None
        return assignment


def _check_options(kind: str, name: str, options: Mapping, allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for key in options:
        if key not in allowed:
            raise UnsupportedOptimizerError(
                f"{kind} {name} has no supported option {key!r}; supported options: "
                f"{', '.join(sorted(allowed))}")


def _validate_hyperparameters(name: str, hp: Mapping) -> None:
    """Apply torch's own range checks, with torch's rule in each message."""
    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ValueError(f"{name}: {message}")

    for key in ("lr", "eps", "weight_decay", "momentum", "alpha", "lr_decay",
                "initial_accumulator_value"):
        if key in hp:
            value = hp[key]
            require(isinstance(value, (int, float)) and not isinstance(value, bool),
                    f"{key} must be a number, got {value!r}")
            require(value >= 0.0, f"invalid {key} {value!r}: it must be >= 0")
    if "betas" in hp:
        betas = tuple(hp["betas"])
        require(len(betas) == 2, f"betas must be a pair (beta1, beta2), got {hp['betas']!r}")
        for i, beta in enumerate(betas):
            require(0.0 <= beta < 1.0, f"invalid beta{i + 1} {beta!r}: it must be in [0, 1)")
    if name == "SGD" and hp["nesterov"]:
        require(hp["momentum"] > 0 and hp["dampening"] == 0,
                f"nesterov needs momentum > 0 and dampening 0, got momentum "
                f"{hp['momentum']!r} and dampening {hp['dampening']!r}")


def scheduler_config(scheduler, **options) -> SchedulerConfig:
    """Return the scheduler ``scheduler`` (a name or class) with torch's defaults filled in."""
    name = _name_of(scheduler)
    if name not in SCHEDULER_DEFAULTS:
        raise UnsupportedOptimizerError(
            f"unsupported scheduler {name!r}; supported: {', '.join(SCHEDULER_DEFAULTS)}")
    last_epoch = options.pop("last_epoch", -1)
    if last_epoch != -1:
        raise UnsupportedOptimizerError(
            f"{name} option last_epoch={last_epoch!r} resumes a schedule midway; only -1 is "
            f"supported (start the optax state afresh or restore it from a checkpoint)")
    options.pop("verbose", None)  # deprecated in torch; prints only
    defaults = SCHEDULER_DEFAULTS[name]
    _check_options("scheduler", name, options, defaults)
    merged = {**defaults, **options}
    missing = [key for key, value in merged.items() if value is REQUIRED]
    if missing:
        raise ValueError(f"scheduler {name} needs option {missing[0]!r}")
    _validate_scheduler(name, merged)
    return SchedulerConfig(name, MappingProxyType(merged))


def _validate_scheduler(name: str, options: dict) -> None:
    if name == "LinearLR":
        if not 0.0 < options["start_factor"] <= 1.0:
            raise ValueError(f"LinearLR start_factor {options['start_factor']!r} must be in (0, 1]")
        if not 0.0 <= options["end_factor"] <= 1.0:
            raise ValueError(f"LinearLR end_factor {options['end_factor']!r} must be in [0, 1]")
    if name == "StepLR" and not (isinstance(options["step_size"], int) and options["step_size"] > 0):
        raise ValueError(f"StepLR step_size must be a positive int, got {options['step_size']!r}")
    if name == "CosineAnnealingLR" and not options["T_max"] > 0:
        raise ValueError(f"CosineAnnealingLR T_max must be > 0, got {options['T_max']!r}")
    if name == "OneCycleLR":
        if options["total_steps"] is None:
            if options["epochs"] is None or options["steps_per_epoch"] is None:
                raise ValueError("OneCycleLR needs total_steps, or epochs and steps_per_epoch")
            options["total_steps"] = options["epochs"] * options["steps_per_epoch"]
        total = options["total_steps"]
        if not (isinstance(total, int) and total > 0):
            raise ValueError(f"OneCycleLR total_steps must be a positive int, got {total!r}")
        if not (isinstance(options["pct_start"], float) and 0.0 <= options["pct_start"] <= 1.0):
            raise ValueError(f"OneCycleLR pct_start must be a float in [0, 1], "
                             f"got {options['pct_start']!r}")
        if options["anneal_strategy"] not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR anneal_strategy must be 'cos' or 'linear', "
                             f"got {options['anneal_strategy']!r}")


def optimizer_config(optimizer, param_groups=None, *, scheduler=None, max_grad_norm=None,
                     grad_norm_type=2.0, **hyperparameters) -> OptimizerConfig:
    """Return the configuration of ``torch.optim.<optimizer>(params, **hyperparameters)``.

    Args:
        optimizer: a class name (``"Adam"``) or the class (``torch.optim.Adam``),
            or an ``OptimizerConfig`` returned unchanged.
        param_groups: torch-style groups with parameter names in place of
            tensors: ``[{"params": ["*bias"], "weight_decay": 0.0}, {"params": ["*weight"]}]``.
        scheduler: ``(name_or_class, {options})`` or a ``SchedulerConfig``.
        max_grad_norm, grad_norm_type: ``clip_grad_norm_`` before each step.
        hyperparameters: the optimizer's keyword arguments.

    Raises:
        UnsupportedOptimizerError: naming an optimizer, scheduler or option with
            no exact mapping.
        ValueError: for a value torch rejects too.
    """
    if isinstance(optimizer, OptimizerConfig):
        return optimizer
    name = _name_of(optimizer)
    if name not in OPTIMIZER_DEFAULTS:
        raise UnsupportedOptimizerError(
            f"unsupported optimizer {name!r}; supported: {', '.join(OPTIMIZER_DEFAULTS)}")
    defaults = OPTIMIZER_DEFAULTS[name]
    flags = IMPLEMENTATION_FLAGS[name]
    _check_options("optimizer", name, hyperparameters, (*defaults, *flags))
    merged = {**defaults, **{k: v for k, v in hyperparameters.items() if k not in flags}}
    _validate_hyperparameters(name, merged)

    groups = []
    for i, group in enumerate(param_groups or ()):
        options = dict(group)
        if "params" not in options:
            raise ValueError(f"param group {i} has no 'params' entry; give a list of torch "
                             f"parameter names or patterns such as ['*bias']")
        patterns = options.pop("params")
        patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        options = {k: v for k, v in options.items() if k not in flags}
        _check_options(f"param group {i} of", name, options, defaults)
        _validate_hyperparameters(name, {**merged, **options})
        groups.append(ParamGroup(patterns, MappingProxyType(options)))

    if isinstance(scheduler, (tuple, list)):
        scheduler = scheduler_config(scheduler[0], **dict(scheduler[1] if len(scheduler) > 1 else {}))
    elif scheduler is not None and not isinstance(scheduler, SchedulerConfig):
        scheduler = scheduler_config(scheduler)
    if scheduler is not None and scheduler.name == "OneCycleLR" and scheduler.options["cycle_momentum"]:
        if "momentum" not in defaults and "betas" not in defaults:
            raise ValueError(f"OneCycleLR with cycle_momentum=True needs an optimizer with "
                             f"momentum or betas; {name} has neither, so pass cycle_momentum=False")
    if max_grad_norm is not None and not max_grad_norm >= 0:
        raise ValueError(f"max_grad_norm must be >= 0, got {max_grad_norm!r}")
    if not (grad_norm_type == math.inf or grad_norm_type > 0):
        raise UnsupportedOptimizerError(
            f"grad_norm_type {grad_norm_type!r} is not supported; use a p > 0 or math.inf")
    return OptimizerConfig(name, MappingProxyType(merged), tuple(groups), scheduler,
                           max_grad_norm, float(grad_norm_type))


def _as_float(value):
    """Return a Python float for a number or a one-element tensor (torch allows tensor lr)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_as_float(v) for v in value)
    if hasattr(value, "item"):
        return float(value.item())
    return value


def config_from_torch(optimizer, named_parameters, scheduler=None, *, max_grad_norm=None,
                      grad_norm_type=2.0) -> OptimizerConfig:
    """Read the configuration of a live ``torch.optim.Optimizer`` (duck-typed, no torch import).

    Args:
        optimizer: the optimizer, before its first step.
        named_parameters: ``model.named_parameters()``, to name the tensors in
            ``optimizer.param_groups``.
        scheduler: its learning-rate scheduler, created but not yet stepped, or None.
        max_grad_norm, grad_norm_type: the ``clip_grad_norm_`` arguments the
            training loop uses, if any (torch keeps them outside the optimizer).
    """
    names = {id(tensor): name for name, tensor in named_parameters}
    name = type(optimizer).__name__
    if name not in OPTIMIZER_DEFAULTS:
        raise UnsupportedOptimizerError(
            f"unsupported optimizer {name!r}; supported: {', '.join(OPTIMIZER_DEFAULTS)}")
    keys = OPTIMIZER_DEFAULTS[name]
    defaults = {k: _as_float(v) for k, v in optimizer.defaults.items() if k in keys}

    base_lrs = None
    scheduler_spec = None
    if scheduler is not None:
        scheduler_spec, base_lrs = _scheduler_from_torch(scheduler, optimizer)

    groups = []
    for i, group in enumerate(optimizer.param_groups):
        unnamed = [tuple(p.shape) for p in group["params"] if id(p) not in names]
        if unnamed:
            raise ValueError(f"param group {i} contains a tensor of shape {unnamed[0]} that is missing "
                             f"from named_parameters; pass the model's named_parameters()")
        options = {k: _as_float(v) for k, v in group.items()
                   if k in keys and _as_float(v) != defaults.get(k)}
        if base_lrs is not None:
            options["lr"] = base_lrs[i]
        if scheduler_spec is not None and scheduler_spec[0] == "OneCycleLR":
            # OneCycleLR has overwritten lr and momentum (or beta1) with its
            # own schedule, which ignores them.
            options.pop("lr", None)
            options.pop("momentum", None)
            if "betas" in options:
                options["betas"] = (defaults["betas"][0], options["betas"][1])
        patterns = [names[id(p)] for p in group["params"]]
        groups.append({"params": patterns, **{k: v for k, v in options.items() if k != "params"}})
    if len(groups) == 1:
        defaults.update({k: v for k, v in groups[0].items() if k != "params"})
        total = len(list(names))
        groups = None if len(groups[0]["params"]) == total else groups
    return optimizer_config(name, groups, scheduler=scheduler_spec, max_grad_norm=max_grad_norm,
                            grad_norm_type=grad_norm_type, **defaults)


def _scheduler_from_torch(scheduler, optimizer):
    """Return ``((name, options), base learning rates)`` of an unstepped torch scheduler."""
    name = type(scheduler).__name__
    if name not in SCHEDULER_DEFAULTS:
        raise UnsupportedOptimizerError(
            f"unsupported scheduler {name!r}; supported: {', '.join(SCHEDULER_DEFAULTS)}")
    if scheduler.last_epoch != 0:
        raise ValueError(f"{name} has already been stepped {scheduler.last_epoch} times; "
                         f"read the configuration before training starts")
    if name == "OneCycleLR":
        groups = optimizer.param_groups
        phases = scheduler._schedule_phases
        total = scheduler.total_steps
        options = {
            "max_lr": [g["max_lr"] for g in groups],
            "total_steps": total,
            "pct_start": (phases[0]["end_step"] + 1) / total,
            "anneal_strategy": scheduler._anneal_func_type,
            "cycle_momentum": scheduler.cycle_momentum,
            "div_factor": groups[0]["max_lr"] / groups[0]["initial_lr"],
            "final_div_factor": groups[0]["initial_lr"] / groups[0]["min_lr"],
            "three_phase": len(phases) == 3,
        }
        if scheduler.cycle_momentum:
            options["base_momentum"] = [g["base_momentum"] for g in groups]
            options["max_momentum"] = [g["max_momentum"] for g in groups]
        # NOTE: div_factor and pct_start are recovered by division, so they may
        # differ from the constructor's arguments in the last bit.
        return (name, options), None
    option_names = [k for k in SCHEDULER_DEFAULTS[name]]
    options = {k: getattr(scheduler, k) for k in option_names}
    return (name, options), [float(lr) for lr in scheduler.base_lrs]
