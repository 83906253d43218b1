"""``WithMask``: a registered buffer next to trainable parameters."""

import torch
from torch import nn


class WithMask(nn.Module):
    """y = (x W^T + b) * m, with a buffer m = ones(3).

    ``register_buffer`` makes ``mask`` part of ``state_dict()`` (saved and
    loaded) and of ``.to(device)`` / ``.to(dtype)``, but not of
    ``parameters()``: it gets no gradient and no optimizer step changes it.
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.linear = nn.Linear(3, 3, dtype=dtype)
        self.register_buffer("mask", torch.ones(3, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x (batch, 3) to (batch, 3)."""
        return self.linear(x) * self.mask
