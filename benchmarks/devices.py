"""Device selection per framework, and synchronisation before reading a clock."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import torch

from twins.devices import cuda_available, jax_device, set_strict_gpu_precision

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Target:
    """The torch device and the JAX device that one benchmark run uses."""

    label: str  # "cpu" or "cuda"
    torch_device: torch.device
    jax_device: object

    def torch_sync(self) -> None:
        """Wait for queued torch work; CPU ops are already synchronous."""
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)

    def to_torch(self, array: np.ndarray, dtype: str) -> torch.Tensor:
        """Return ``array`` cast to ``dtype`` on the torch device."""
        return torch.as_tensor(array, dtype=TORCH_DTYPES[dtype], device=self.torch_device)

    def to_jax(self, array: np.ndarray, dtype: str) -> jax.Array:
        """Return ``array`` cast to ``dtype`` on the JAX device."""
        return jax.device_put(np.asarray(array, dtype=dtype), self.jax_device)


def make_target(label: str) -> Target:
    """Return the target for ``label``; raise ``ValueError`` when it is not available.

    On CUDA, TF32 is turned off in torch and JAX is asked for full-precision
    matmuls, as in the parity runs, so float32 timings compare like with like.
    """
    if label == "cpu":
        return Target("cpu", torch.device("cpu"), jax_device("cpu"))
    if label == "cuda":
        if not cuda_available():
            raise ValueError("--device cuda needs a CUDA GPU visible to both torch and JAX; "
                             "none is visible here, so run with --device cpu")
        set_strict_gpu_precision()
        return Target("cuda", torch.device("cuda"), jax_device("gpu"))
    raise ValueError(f"unknown device {label!r}; use 'cpu' or 'cuda'")
