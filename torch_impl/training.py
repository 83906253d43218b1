"""Loss, gradient and training loop for the examples, with autograd and torch.optim."""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the mean squared error over every element."""
    return ((prediction - target) ** 2).mean()


def loss_and_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Return the loss and ``{name: grad}`` for every trainable parameter.

    ``backward()`` accumulates into ``.grad``, so the old gradients are cleared
    first; buffers and unregistered tensors have no ``.grad``.
    """
    model.zero_grad(set_to_none=True)
    loss = mse_loss(model(x), y)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return loss.detach(), grads


@dataclass
class Trajectory:
    """Loss before each step and every parameter after it, as float64-safe numpy.

    ``losses`` has shape (steps,); ``params[name]`` has shape (steps, *shape).
    """

    losses: np.ndarray
    params: dict[str, np.ndarray]


def train(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
          y: torch.Tensor, steps: int) -> Trajectory:
    """Run ``steps`` full-batch steps of ``optimizer`` on the MSE loss."""
    losses = []
    history = {name: [] for name, _ in model.named_parameters()}
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = mse_loss(model(x), y)
        loss.backward()
        optimizer.step()

        losses.append(loss.item())
        for name, p in model.named_parameters():
            history[name].append(p.detach().cpu().numpy().copy())
    return Trajectory(np.asarray(losses), {k: np.stack(v) for k, v in history.items()})
