"""Device pairs for parity runs: which torch device faces which JAX device."""

import jax
import torch

# label -> (torch device, JAX platform). "cpu/cuda" compares torch on the CPU
# with JAX on the GPU, a cross-device check.
DEVICE_PAIRS = {
    "cpu": ("cpu", "cpu"),
    "cuda": ("cuda", "gpu"),
    "cpu/cuda": ("cpu", "gpu"),
}


def jax_has_gpu() -> bool:
    """Return True when JAX has a GPU backend with at least one device."""
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:  # raised when no GPU backend is installed
        return False


def cuda_available() -> bool:
    """Return True when both torch and JAX see a CUDA GPU."""
    return torch.cuda.is_available() and jax_has_gpu()


def available_device_labels() -> list[str]:
    """Return the device-pair labels this machine can run."""
    return list(DEVICE_PAIRS) if cuda_available() else ["cpu"]


def set_strict_gpu_precision() -> None:
    """Turn off TF32 in torch and ask JAX for full-precision matmuls.

    Without this, float32 matmuls on recent NVIDIA GPUs round their inputs to
    TF32 (10-bit mantissa) in JAX by default, and in torch when TF32 is enabled,
    so float32 parity would fail by about 1e-3.
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    jax.config.update("jax_default_matmul_precision", "highest")


def jax_device(platform: str):
    """Return the first JAX device of ``platform`` ("cpu" or "gpu")."""
    return jax.devices(platform)[0]
