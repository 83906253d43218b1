"""The registry of example pairs that parity tests, benchmarks and the CLI iterate over.

Adding an example means a torch module, its Flax twin and one ``ExamplePair``
entry here.
"""

from dataclasses import dataclass, field
import numpy as np
import torch
from flax import linen

import flax_impl.mlp
import flax_impl.scale
import flax_impl.tiny_linear
import flax_impl.unregistered
import flax_impl.with_mask
import torch_impl.mlp
import torch_impl.scale
import torch_impl.tiny_linear
import torch_impl.unregistered
import torch_impl.with_mask


@dataclass(frozen=True)
class ExamplePair:
    """One example written twice, with the data both sides train on.

    Attributes:
        name: the CLI name, e.g. ``"mlp"``.
        concept: the ``nn.Module`` idea the example shows, in one line.
        torch_cls: the ``torch.nn.Module`` class; its constructor takes ``dtype``.
        flax_cls: the ``flax.linen.Module`` class; it has a ``param_dtype`` field.
        input_shape: the shape of one sample x.
        output_shape: the shape of one target y.
        buffers: names of registered buffers (torch) = entries of the Flax
            ``buffers`` collection.
    """

    name: str
    concept: str
    torch_cls: type[torch.nn.Module]
    flax_cls: type[linen.Module]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    buffers: tuple[str, ...] = field(default=())

    def torch_model(self, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.nn.Module:
        """Return a torch model with torch's default init drawn from ``seed``."""
        torch.manual_seed(seed)
        return self.torch_cls(dtype=dtype)

    def flax_model(self, dtype=np.float64) -> linen.Module:
        """Return the Flax twin with parameters of ``dtype``."""
        return self.flax_cls(param_dtype=dtype)

    def make_data(self, batch: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Return float64 (x, y) for a seeded regression problem.

        x ~ N(0, 1). y is a fixed random affine map of x, squashed by tanh so the
        examples cannot fit it exactly, plus 0.1 N(0, 1) noise. Both frameworks
        cast these same arrays, so parity never depends on either RNG.
        """
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch, *self.input_shape))
        n_in = int(np.prod(self.input_shape))
        n_out = int(np.prod(self.output_shape))
        teacher = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
        clean = np.tanh(x.reshape(batch, n_in) @ teacher + 0.5)
        y = clean.reshape(batch, *self.output_shape) + 0.1 * rng.standard_normal((batch, *self.output_shape))
        return x, y


EXAMPLES: dict[str, ExamplePair] = {
    pair.name: pair
    for pair in [
        ExamplePair("tiny_linear", "a Linear layer registered as a submodule",
                    torch_impl.tiny_linear.TinyLinear, flax_impl.tiny_linear.TinyLinear, (3,), (2,)),
        ExamplePair("scale", "a scalar nn.Parameter",
                    torch_impl.scale.Scale, flax_impl.scale.Scale, (3,), (3,)),
        ExamplePair("unregistered", "a plain tensor attribute that is not registered",
                    torch_impl.unregistered.Unregistered, flax_impl.unregistered.Unregistered, (3,), (3,)),
        ExamplePair("with_mask", "a registered buffer (Flax: the 'buffers' collection)",
                    torch_impl.with_mask.WithMask, flax_impl.with_mask.WithMask, (3,), (3,),
                    buffers=("mask",)),
        ExamplePair("mlp", "nested modules through nn.Sequential",
                    torch_impl.mlp.MLP, flax_impl.mlp.MLP, (4,), (1,)),
    ]
}


class UnknownExampleError(KeyError):
    """Raised for an example name that is not in the registry."""

    def __str__(self):
        return self.args[0]


def get_example(name: str) -> ExamplePair:
    """Return the registered pair called ``name``, or raise ``UnknownExampleError``."""
    try:
        return EXAMPLES[name]
    except KeyError:
        known = ", ".join(EXAMPLES)
        raise UnknownExampleError(f"unknown example {name!r}; known examples: {known}") from None
