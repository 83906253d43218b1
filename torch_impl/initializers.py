"""torch's default ``nn.Linear`` init law, written out.

``nn.Linear.reset_parameters`` draws the weight with ``kaiming_uniform_(a=sqrt(5))``
and the bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The kaiming bound with
a = sqrt(5) is sqrt(6 / ((1 + 5) fan_in)) = 1/sqrt(fan_in), so both tensors
follow U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and the weight std is 1/sqrt(3 fan_in).
The Flax twin of this file builds initializers with the same law.
"""

import math

import torch
from torch import nn


def linear_init_bound(fan_in: int) -> float:
    """Return the half-width 1/sqrt(fan_in) of torch's default Linear init."""
    return 1.0 / math.sqrt(fan_in)


@torch.no_grad()
def reset_linear_(linear: nn.Linear, generator: torch.Generator | None = None) -> nn.Linear:
    """Redraw ``linear``'s weight and bias in place from torch's default law."""
    bound = linear_init_bound(linear.in_features)
    linear.weight.uniform_(-bound, bound, generator=generator)
    if linear.bias is not None:
        linear.bias.uniform_(-bound, bound, generator=generator)
    return linear
