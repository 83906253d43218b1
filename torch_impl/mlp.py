"""``MLP``: nested modules through ``nn.Sequential``."""

import torch
from torch import nn


class MLP(nn.Module):
    """y = W2 relu(W1 x + b1) + b2, a 4 -> 16 -> 1 perceptron.

    ``nn.Sequential`` names its children by position, so the parameters are
    ``net.0.weight`` (16, 4), ``net.0.bias`` (16,), ``net.2.weight`` (1, 16) and
    ``net.2.bias`` (1,); the ReLU takes index 1 and owns no parameters.
    Init: torch's default Linear law per layer, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(4, 16, dtype=dtype),
            nn.ReLU(),
            nn.Linear(16, 1, dtype=dtype),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x (batch, 4) to (batch, 1)."""
        return self.net(x)
