"""``Unregistered``: a plain tensor attribute that ``nn.Module`` does not track."""

import torch
from torch import nn


class Unregistered(nn.Module):
    """y = x W^T + b + c, where c = ones(3) is a plain tensor attribute.

    ``self.offset`` is neither an ``nn.Parameter`` nor a buffer, so torch does
    not register it: it is absent from ``parameters()`` (no optimizer sees it),
    from ``state_dict()`` (a checkpoint loses it; a loaded model gets whatever
    ``__init__`` builds), and ``.to(device)`` / ``.to(dtype)`` leave it behind.
    After ``model.to("cuda")`` the forward raises a device-mismatch error, and
    after ``model.double()`` ``offset`` stays float32. Use ``register_buffer``
    (see ``WithMask``) for state that must travel with the model.
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.linear = nn.Linear(3, 3, dtype=dtype)
        self.offset = torch.ones(3, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x (batch, 3) to (batch, 3)."""
        return self.linear(x) + self.offset
