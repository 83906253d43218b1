"""torch.optim configurations -> the optax transformation that takes the same steps.

``torch_to_optax("Adam", lr=0.1, weight_decay=0.1)`` returns an
``optax.GradientTransformation`` whose update equals, step for step, what
``torch.optim.Adam(params, lr=0.1, weight_decay=0.1)`` does to the same
parameters given the same gradients. The orderings and defaults that differ
between the libraries, each handled here:

* SGD: weight decay is added to the gradient before momentum; the first
  momentum buffer is the raw gradient even with dampening.
* Adam: ``weight_decay`` is an L2 term added to the gradient before the moments
  (AdamW's decoupled decay only with ``decoupled_weight_decay=True``).
* AdamW: default weight decay 0.01 (optax.adamw: 1e-4), multiplied by the
  scheduled learning rate.
* RMSprop: alpha 0.99 (optax: decay 0.9), eps outside the square root, and the
  learning rate applied after the momentum buffer.
* Adagrad: accumulator starts at 0 (optax: 0.1), eps 1e-10 outside the root,
  lr / (1 + (t - 1) lr_decay).
* ``clip_grad_norm_``: max_norm / (norm + 1e-6), applied to every gradient
  before the optimizer.
* Schedulers: torch's learning rate at ``last_epoch = k`` for the k-th step.
* Complex parameters: ``jax.grad`` returns the conjugate of torch's ``.grad``,
  so the transformation conjugates it. torch keeps one moment per real
  component, so real and imaginary parts are split
  (``optax.contrib.split_real_and_imaginary``).

The configuration is plain data (see ``twins.optim.config``), so this module
does not import torch; ``twins.optim_torch`` builds the torch side.

Example:
    >>> tx = torch_to_optax("SGD", lr=0.1, momentum=0.9, weight_decay=1e-4,
    ...                     param_groups=[{"params": ["*bias"], "weight_decay": 0.0},
    ...                                   {"params": ["*weight"]}],
    ...                     scheduler=("StepLR", {"step_size": 30}), max_grad_norm=1.0)
    >>> opt_state = tx.init(variables["params"])
"""

import jax
import optax
from flax import traverse_util

from twins.convert import flax_path_to_torch_key
from twins.optim import schedules, transforms
from twins.optim.config import (OptimizerConfig, UnsupportedOptimizerError, config_from_torch,
                                optimizer_config, scheduler_config)

__all__ = ["torch_to_optax", "optimizer_config", "scheduler_config", "config_from_torch",
           "OptimizerConfig", "UnsupportedOptimizerError", "torch_parameter_names"]

FROZEN = "frozen"


def torch_to_optax(optimizer, param_groups=None, *, scheduler=None, max_grad_norm=None,
                   grad_norm_type=2.0, conjugate_complex_grads: bool = True,
                   **hyperparameters) -> optax.GradientTransformation:
    """Return the optax transformation equal to a torch optimizer, scheduler and clipping.

    Args:
        optimizer: ``"SGD"``, ``"Adam"``, ``"AdamW"``, ``"RMSprop"`` or
            ``"Adagrad"``, the ``torch.optim`` class itself, or an
            ``OptimizerConfig`` (then the other arguments must be left out).
        param_groups: torch-style param groups with torch parameter names (or
            ``fnmatch`` patterns such as ``"*bias"``) in place of tensors. A
            parameter in no group is not trained, as in torch.
        scheduler: ``(name, {options})`` of a torch lr scheduler, stepped after
            every optimizer step: StepLR, ExponentialLR, CosineAnnealingLR,
            LinearLR or OneCycleLR.
        max_grad_norm, grad_norm_type: ``clip_grad_norm_(model.parameters(),
            max_grad_norm, grad_norm_type)`` before each step.
        conjugate_complex_grads: conjugate complex gradients first, because
            ``jax.grad`` returns the conjugate of torch's ``.grad``. Pass False
            for gradients that already follow torch's convention.
        hyperparameters: the torch optimizer's keyword arguments.

    Returns:
        A transformation for a Flax params tree. Its ``update`` needs ``params``
        (weight decay reads them). Leaves are matched to param groups by their
        torch names, from the Flax path by ``twins.convert``'s naming rules.

    Raises:
        UnsupportedOptimizerError: naming an optimizer, scheduler or option that
            has no exact mapping here.
        ValueError: for a value torch rejects too (a negative lr, nesterov with
            dampening), or a parameter that two groups claim.
    """
    if isinstance(optimizer, OptimizerConfig) and (
            param_groups is not None or scheduler is not None or max_grad_norm is not None
            or hyperparameters):
        raise TypeError("pass either an OptimizerConfig or the torch arguments, not both")
    config = optimizer_config(optimizer, param_groups, scheduler=scheduler,
                              max_grad_norm=max_grad_norm, grad_norm_type=grad_norm_type,
                              **hyperparameters)
    return build_transformation(config, conjugate_complex_grads)


def build_transformation(config: OptimizerConfig,
                         conjugate_complex_grads: bool = True) -> optax.GradientTransformation:
    """Return the optax twin of ``config`` (see ``torch_to_optax``)."""
    steps = []
    if conjugate_complex_grads:
        steps.append(transforms.conjugate_complex_updates())
    if config.max_grad_norm is not None:
        steps.append(transforms.clip_by_global_norm_torch(config.max_grad_norm,
                                                          config.grad_norm_type))

    groups = [
        optax.contrib.split_real_and_imaginary(group_transformation(config, i, hp))
        for i, hp in enumerate(config.group_hyperparameters())
    ]
    if not config.param_groups:
        steps.append(groups[0])
    else:
        labelled = {str(i): tx for i, tx in enumerate(groups)}
        labelled[FROZEN] = optax.set_to_zero()
        steps.append(optax.multi_transform(labelled, lambda params: group_labels(config, params)))
    return optax.chain(*steps)


def torch_parameter_names(params) -> dict[tuple[str, ...], str]:
    """Return ``{Flax path: torch parameter name}`` for a (nested dict) params tree."""
    return {path: flax_path_to_torch_key(path)
            for path in traverse_util.flatten_dict(_as_dict(params))}


def _as_dict(tree):
    return {k: _as_dict(v) for k, v in tree.items()} if hasattr(tree, "items") else tree


def group_labels(config: OptimizerConfig, params):
    """Return a tree like ``params`` whose leaves are the group index (as str) or ``"frozen"``."""
    names = torch_parameter_names(params)
    assignment = config.assign_groups(names.values())
    flat = {path: FROZEN if assignment[name] is None else str(assignment[name])
            for path, name in names.items()}
    labels = traverse_util.unflatten_dict(flat)
    if isinstance(params, dict):
        return labels
    # A FrozenDict (or another mapping node) orders leaves by sorted key, as a dict does.
    return jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(labels))


def group_transformation(config: OptimizerConfig, group: int,
                         hp: dict) -> optax.GradientTransformation:
    """Return the update of one param group, with its lr (and momentum) schedule injected.

    ``optax.inject_hyperparams`` evaluates the schedules at the step count,
    casts them to the dtype of the group's parameters and keeps the values the
    last update used in ``state.hyperparams`` (before the first update: the
    values it will use).
    """
    lr = schedules.lr_schedule(config.scheduler, hp["lr"], group)
    momentum = schedules.momentum_schedule(config.scheduler, group)
    if config.name == "Adagrad" and hp["lr_decay"]:
        # torch: clr = group lr / (1 + (step - 1) lr_decay), step counted from 1.
        lr_decay, scheduled = hp["lr_decay"], lr
        lr = lambda count: scheduled(count) / (1.0 + schedules.float_count(count) * lr_decay)
    build = _BUILDERS[config.name]
    if config.name == "Adagrad":
        return optax.inject_hyperparams(lambda learning_rate: build(hp, learning_rate, None, False))(
            learning_rate=lr)

    cycled = momentum is not None
    if "betas" in hp:
        # OneCycleLR cycles Adam's beta1 (optax's b1) in place of a momentum.
        def adam_factory(learning_rate, b1):
            return build(hp, learning_rate, b1, cycled)

        b1 = momentum if cycled else hp["betas"][0]
        return optax.inject_hyperparams(adam_factory)(learning_rate=lr, b1=b1)

    def momentum_factory(learning_rate, momentum):
        return build(hp, learning_rate, momentum, cycled)

    momentum = momentum if cycled else hp["momentum"]
    return optax.inject_hyperparams(momentum_factory)(learning_rate=lr, momentum=momentum)


def _maximize(hp) -> list:
    return [optax.scale(-1.0)] if hp["maximize"] else []


def _l2(weight_decay) -> list:
    # torch: grad <- grad + weight_decay * param, before any moment.
    return [optax.add_decayed_weights(weight_decay)] if weight_decay else []


def _sgd(hp, learning_rate, momentum, cycled):
    steps = [*_maximize(hp), *_l2(hp["weight_decay"])]
    if cycled or hp["momentum"] != 0:
        if hp["dampening"] == 0:
            steps.append(optax.trace(decay=momentum, nesterov=hp["nesterov"]))
        else:
            steps.append(transforms.dampened_trace(momentum, hp["dampening"], hp["nesterov"]))
    steps.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*steps)


def _adam(hp, learning_rate, momentum, cycled, decoupled=False):
    decoupled = decoupled or hp.get("decoupled_weight_decay", False)
    steps = _maximize(hp)
    if not decoupled:
        steps += _l2(hp["weight_decay"])
    b2 = hp["betas"][1]
    if hp["amsgrad"]:
        steps.append(transforms.scale_by_torch_amsgrad(momentum, b2, hp["eps"]))
    else:
        steps.append(optax.scale_by_adam(momentum, b2, hp["eps"]))
    if decoupled and hp["weight_decay"]:
        # torch: param <- param (1 - lr wd) before the Adam step; adding wd * param
        # ahead of the lr scaling gives the same sum, with the scheduled lr.
        steps.append(optax.add_decayed_weights(hp["weight_decay"]))
    steps.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*steps)


def _adamw(hp, learning_rate, momentum, cycled):
    return _adam(hp, learning_rate, momentum, cycled, decoupled=True)


def _rmsprop(hp, learning_rate, momentum, cycled):
    steps = [*_maximize(hp), *_l2(hp["weight_decay"])]
    if hp["centered"]:
        steps.append(optax.scale_by_stddev(decay=hp["alpha"], eps=hp["eps"], eps_in_sqrt=False))
    else:
        steps.append(optax.scale_by_rms(decay=hp["alpha"], eps=hp["eps"], eps_in_sqrt=False))
    if cycled or hp["momentum"] > 0:
        # torch: buf <- m buf + g / (sqrt(v) + eps), then param <- param - lr buf.
        # The buffer accumulates unscaled steps and the lr comes after it.
        steps.append(optax.trace(decay=momentum))
    steps.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*steps)


def _adagrad(hp, learning_rate, momentum, cycled):
    del momentum, cycled
    steps = [*_maximize(hp), *_l2(hp["weight_decay"]),
             transforms.scale_by_torch_adagrad(hp["initial_accumulator_value"], hp["eps"]),
             optax.scale_by_learning_rate(learning_rate)]
    return optax.chain(*steps)


_BUILDERS = {"SGD": _sgd, "Adam": _adam, "AdamW": _adamw, "RMSprop": _rmsprop, "Adagrad": _adagrad}
