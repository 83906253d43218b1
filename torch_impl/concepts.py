"""The tutorial's ``nn.Module`` concepts, one small function each.

Each function has a twin of the same name in ``flax_impl.concepts``; the tests
run both on the same weights and compare what they show.
"""

import os
import tempfile

import torch
from torch import nn


def call_vs_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``model(x)`` and ``model.forward(x)``.

    Both compute the same values, but only ``model(x)`` (``__call__``) runs the
    registered hooks; calling ``forward`` directly bypasses them.
    """
    return model(x), model.forward(x)


def record_intermediate(model: nn.Module, x: torch.Tensor, submodule: str) -> torch.Tensor:
    """Run ``model(x)`` and return the output of the submodule named ``submodule``.

    A forward hook on ``model.get_submodule(submodule)`` (e.g. ``"net.0"``)
    receives ``(module, inputs, output)`` after that submodule runs; the handle
    removes it again so later calls are unaffected.
    """
    recorded = []
    handle = model.get_submodule(submodule).register_forward_hook(
        lambda module, inputs, output: recorded.append(output.detach()))
    try:
        model(x)
    finally:
        handle.remove()
    return recorded[0]


def parameter_names(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """Return ``(dotted name, shape)`` for every registered parameter, in module order.

    Buffers and plain tensor attributes are not parameters and do not appear.
    """
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def make_optimizer(model: nn.Module, lr: float = 0.1) -> torch.optim.Optimizer:
    """Return SGD over ``model.parameters()``: the optimizer updates registered parameters only."""
    return torch.optim.SGD(model.parameters(), lr=lr)


def save_state_dict(model: nn.Module, path: str) -> None:
    """Write ``model.state_dict()`` (parameters and buffers) to ``path`` atomically.

    The file is written next to ``path`` and renamed over it, so an interrupted
    save never leaves a truncated checkpoint where a good one was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as handle:
        torch.save(model.state_dict(), handle)
    os.replace(handle.name, path)


def load_state_dict(model: nn.Module, path: str) -> nn.Module:
    """Load the state_dict at ``path`` into ``model`` in place (strict: every key must match)."""
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    return model


def move_to_device(model: nn.Module, device: str | torch.device | torch.dtype) -> nn.Module:
    """Move the parameters and buffers of ``model`` in place with ``.to(...)``.

    A plain tensor attribute (``Unregistered.offset``) is not moved and not cast.
    """
    return model.to(device)


def describe(model: nn.Module) -> str:
    """Return ``print(model)``'s text: the module tree with each layer's arguments."""
    return str(model)
