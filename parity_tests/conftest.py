"""Suite-wide settings: float64 JAX, device markers, no stray warnings.

``jax_enable_x64`` must be on before any JAX array exists, so it is set here at
import time (importing ``twins`` sets it too). Warnings are errors
(pyproject's ``filterwarnings``); each ignore there states its reason.
"""

import jax
import pytest

jax.config.update("jax_enable_x64", True)

from twins.devices import cuda_available  # noqa: E402  (after x64 is on)


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU visible to both torch and JAX")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
