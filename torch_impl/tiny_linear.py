"""``TinyLinear``: one ``nn.Linear(3, 2)``, the smallest module with parameters."""

import torch
from torch import nn


class TinyLinear(nn.Module):
    """y = x W^T + b, with W of shape (2, 3) (out x in) and b of shape (2,).

    Assigning an ``nn.Linear`` to ``self.linear`` registers it as a submodule, so
    ``named_parameters()`` yields ``linear.weight`` (2, 3) and ``linear.bias`` (2,).
    Init: torch's default Linear law, W and b ~ U(-1/sqrt(3), 1/sqrt(3)).

    Example:
        >>> model = TinyLinear()
        >>> model(torch.ones(4, 3)).shape
        torch.Size([4, 2])
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.linear = nn.Linear(3, 2, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x (batch, 3) to (batch, 2)."""
        return self.linear(x)
