"""NQS twin models holding the same weights, for parity checks and tests.

Weights are drawn on the torch side and copied to Flax with ``twins.convert``,
so both frameworks evaluate the same numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import traverse_util

from flax_impl import ansatz as flax_ansatz
from torch_impl import ansatz as torch_ansatz
from twins import convert

# (dtype name, parameter kind) -> torch parameter dtype.
TORCH_DTYPES = {
    ("float64", "real"): torch.float64,
    ("float64", "complex"): torch.complex128,
    ("float32", "real"): torch.float32,
    ("float32", "complex"): torch.complex64,
}


def numpy_dtype(torch_dtype: torch.dtype) -> np.dtype:
    return torch.empty((), dtype=torch_dtype).numpy().dtype


def configurations(n_sites: int, batch: int, seed: int = 0) -> np.ndarray:
    """Return ``batch`` random float64 spin configurations (batch, n_sites)."""
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(batch, n_sites))


def wrapped_difference(a, b) -> np.ndarray:
    """Return |a - b| with the imaginary part taken modulo 2 pi (log-amplitudes)."""
    difference = np.asarray(a, dtype=np.complex128) - np.asarray(b, dtype=np.complex128)
    phase = np.mod(difference.imag + np.pi, 2 * np.pi) - np.pi
    return np.abs(difference.real + 1j * phase)


def relative_error(value, expected) -> float:
    """Return max |value - expected| / max |expected|."""
    value = np.asarray(value, dtype=np.complex128)
    expected = np.asarray(expected, dtype=np.complex128)
    return float(np.max(np.abs(value - expected)) / np.max(np.abs(expected)))


def flat_params(params) -> dict:
    """Return a Flax params tree as {"Dense/kernel": numpy array, ...}."""
    return {"/".join(path): np.asarray(leaf) for path, leaf in traverse_util.flatten_dict(params).items()}


def torch_to_flat(tensors: dict, template) -> dict:
    """Convert torch-named tensors (parameters or directions) to flat Flax names."""
    return flat_params(convert.state_dict_to_variables(tensors, template))


def torch_batched_to_flat(tensors: dict) -> dict:
    """Convert torch-named arrays with a leading batch or step axis to flat Flax names.

    The naming rules of ``twins.convert`` applied per entry: a 2-D weight per
    batch entry becomes a kernel with its last two axes swapped.
    """
    flat = {}
    for key, value in tensors.items():
        array = value.detach().cpu().resolve_conj().numpy() if torch.is_tensor(value) else np.asarray(value)
        path = convert.torch_key_to_flax_path(key, array.ndim - 1)
        if path[-1] == "kernel":
            array = array.swapaxes(-1, -2)
        flat["/".join(path)] = array
    return flat


def rbm_pair(n_sites: int, torch_dtype, alpha: float = 1, scale: float = 1.0, seed: int = 0):
    """Return (torch RBM, Flax RBM, Flax params) holding the same weights.

    ``scale`` multiplies NetKet's small N(0, 0.01^2) init, so that log cosh
    leaves its quadratic regime and the checks see nontrivial values.
    """
    torch.manual_seed(seed)
    torch_model = torch_ansatz.RBM(n_sites, alpha, dtype=torch_dtype)
    with torch.no_grad():
        for parameter in torch_model.parameters():
            parameter.mul_(scale)
    flax_model = flax_ansatz.RBM(alpha=alpha, param_dtype=numpy_dtype(torch_dtype))
    # Shapes only: eval_shape skips running init.
    template = jax.eval_shape(flax_model.init, jax.random.key(0), jnp.zeros((1, n_sites)))
    params = convert.state_dict_to_variables(torch_model.state_dict(), template)["params"]
    return torch_model, flax_model, jax.tree_util.tree_map(jnp.asarray, params)


def ffn_pair(n_sites: int, torch_dtype=torch.float64, alpha: float = 2, seed: int = 0):
    """Return (torch FFN, Flax FFN, Flax params) holding the same weights."""
    torch.manual_seed(seed)
    torch_model = torch_ansatz.FFN(n_sites, alpha=alpha, dtype=torch_dtype)
    flax_model = flax_ansatz.FFN(n_sites=n_sites, alpha=alpha, param_dtype=numpy_dtype(torch_dtype))
    # Shapes only: eval_shape skips running init.
    template = jax.eval_shape(flax_model.init, jax.random.key(0), jnp.zeros((1, n_sites)))
    params = convert.state_dict_to_variables(torch_model.state_dict(), template)["params"]
    return torch_model, flax_model, jax.tree_util.tree_map(jnp.asarray, params)
