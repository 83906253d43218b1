"""``Scale``: a single scalar ``nn.Parameter``."""

import torch
from torch import nn


class Scale(nn.Module):
    """y = w x for a trainable scalar w, initialised to 1.

    Wrapping a tensor in ``nn.Parameter`` and assigning it to an attribute
    registers it: ``named_parameters()`` yields ``weight`` with shape ().

    Example:
        >>> Scale()(torch.full((2,), 3.0))
        tensor([3., 3.], grad_fn=<MulBackward0>)
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(1.0, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale x (any shape) by the scalar weight."""
        return self.weight * x
