"""The torch side of an ``OptimizerConfig``: optimizer, scheduler and gradient clipping.

``twins.optim_map`` builds the optax side of the same configuration without
importing torch. This module builds the torch side, for parity checks and for
users who have a configuration and want the torch objects.
"""

from collections.abc import Iterable

import torch

from twins.optim.config import OptimizerConfig, optimizer_config


class TorchTrainingStep:
    """One training step's optimizer part: clip, ``optimizer.step()``, ``scheduler.step()``.

    It has the ``zero_grad`` and ``step`` methods a training loop calls on a
    ``torch.optim.Optimizer``, so ``torch_impl.training.train`` runs it as is.
    The order is torch's documented one: clip after ``backward()``, step the
    scheduler after the optimizer.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler, parameters: list[torch.Tensor],
                 max_grad_norm: float | None, grad_norm_type: float):
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.parameters = parameters
        self.max_grad_norm = max_grad_norm
        self.grad_norm_type = grad_norm_type

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm, self.grad_norm_type)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


def make_torch_optimizer(config, named_parameters: Iterable[tuple[str, torch.Tensor]]) -> TorchTrainingStep:
    """Return the torch optimizer (with scheduler and clipping) that ``config`` describes.

    Args:
        config: an ``OptimizerConfig``, or ``(name, hyperparameters)`` as for
            ``twins.optim_map.optimizer_config``.
        named_parameters: ``model.named_parameters()``; param group patterns
            match these names.
    """
    if not isinstance(config, OptimizerConfig):
        name, hyperparameters = config
        config = optimizer_config(name, **hyperparameters)
    named = list(named_parameters)
    optimizer_cls = getattr(torch.optim, config.name)

    if config.param_groups:
        assignment = config.assign_groups(name for name, _ in named)
        params = [
            {"params": [p for name, p in named if assignment[name] == i], **group.options}
            for i, group in enumerate(config.param_groups)
        ]
    else:
        params = [p for _, p in named]
    optimizer = optimizer_cls(params, **config.hyperparameters)

    scheduler = None
    if config.scheduler is not None:
        scheduler_cls = getattr(torch.optim.lr_scheduler, config.scheduler.name)
        scheduler = scheduler_cls(optimizer, **config.scheduler.options)
    return TorchTrainingStep(optimizer, scheduler, [p for _, p in named],
                             config.max_grad_norm, config.grad_norm_type)
