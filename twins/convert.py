"""torch ``state_dict`` <-> Flax ``variables``, by naming rules rather than tables.

The rules, applied to each dotted torch key:

* a numeric segment (an ``nn.Sequential`` index) ``net.0`` <-> ``net/layers_0``;
  Flax's ``nn.Sequential`` counts activations too, so indices match torch's;
* a 2-D ``weight`` (out, in) <-> ``kernel`` (in, out), transposed;
* every other leaf keeps its name (``bias``, a scalar ``weight``, ``visible_bias``);
* a torch buffer <-> the same path in the Flax ``buffers`` collection.

Values cross as numpy arrays, so neither side's tensors leak into the other.
Every conversion checks names and shapes against a template from the target
side and raises ``ConversionError`` naming the key, both shapes and the fix.
"""

from collections.abc import Mapping

import numpy as np
from flax import traverse_util

BUFFERS = "buffers"


class ConversionError(ValueError):
    """A missing, extra or mis-shaped entry between a state_dict and variables."""


def torch_key_to_flax_path(key: str, ndim: int) -> tuple[str, ...]:
    """Return the Flax path of torch key ``key`` holding an ``ndim``-D tensor."""
    *modules, leaf = key.split(".")
    path = [f"layers_{part}" if part.isdigit() else part for part in modules]
    if leaf == "weight" and ndim == 2:
        leaf = "kernel"
    return (*path, leaf)


def flax_path_to_torch_key(path: tuple[str, ...]) -> str:
    """Return the torch key of Flax path ``path`` (the inverse of the rule above)."""
    *modules, leaf = path
    parts = [part.removeprefix("layers_") if _is_layer_index(part) else part for part in modules]
    if leaf == "kernel":
        leaf = "weight"
    return ".".join([*parts, leaf])


def _is_layer_index(part: str) -> bool:
    return part.startswith("layers_") and part.removeprefix("layers_").isdigit()


def _transposes(path: tuple[str, ...]) -> bool:
    return path[-1] == "kernel"


def state_dict_to_variables(state_dict: Mapping, template: Mapping,
                            buffers: tuple[str, ...] = ()) -> dict:
    """Convert a torch ``state_dict`` to Flax ``variables`` shaped like ``template``.

    Args:
        state_dict: torch key -> tensor or array (``model.state_dict()``, or the
            gradients ``{name: p.grad}``).
        template: Flax variables (``model.init(...)`` or ``jax.eval_shape`` of it)
            whose names and shapes the result must match. A template without a
            ``params`` key is taken as a bare params tree.
        buffers: torch keys that are buffers; they go to the ``buffers`` collection.

    Returns:
        Nested dict of numpy arrays with the template's structure.
    """
    bare = "params" not in template
    expected = _flat_shapes(template if not bare else {"params": template})
    converted = {}
    for key, value in state_dict.items():
        array = _to_numpy(value)
        collection = BUFFERS if key in buffers else "params"
        path = (collection, *torch_key_to_flax_path(key, array.ndim))
        if _transposes(path):
            array = array.T
        if path not in expected:
            raise ConversionError(
                f"extra torch key {key!r} (Flax path {'/'.join(path)!r}, shape {array.shape}) "
                f"is not in the Flax variables; expected one of {_format_paths(expected)}. "
                f"Check the example and that buffers are listed as buffers."
            )
        _check_shape(key, path, expected[path], array.shape)
        converted[path] = array
    missing = [p for p in expected if p not in converted]
    if missing:
        path = missing[0]
        raise ConversionError(
            f"missing torch key {flax_path_to_torch_key(path[1:])!r} for Flax path "
            f"{'/'.join(path)!r} with shape {expected[path]}; the state_dict has "
            f"{sorted(state_dict)}. Save the full state_dict (buffers included)."
        )
    variables = traverse_util.unflatten_dict(converted)
    return variables["params"] if bare else variables


def variables_to_state_dict(variables: Mapping, template: Mapping | None = None) -> dict:
    """Convert Flax ``variables`` (or a bare params tree) to a torch-style state_dict.

    Args:
        variables: ``{'params': ..., 'buffers': ...}`` or a bare params tree.
        template: torch key -> tensor (``model.state_dict()``) to check names and
            shapes against; skipped when None.

    Returns:
        torch key -> numpy array, weights in torch's (out, in) layout.
    """
    tree = variables if "params" in variables else {"params": variables}
    state_dict = {}
    for path, value in traverse_util.flatten_dict(dict(tree)).items():
        array = _to_numpy(value)
        if _transposes(path):
            array = array.T
        state_dict[flax_path_to_torch_key(path[1:])] = array
    if template is not None:
        check_against_state_dict(state_dict, template)
    return state_dict


def flax_params_to_torch_vector(params: Mapping, torch_names: list[str]) -> np.ndarray:
    """Flatten a Flax params tree into torch's ``parameters_to_vector`` order and layout.

    ``torch_names`` is ``[name for name, _ in model.named_parameters()]``: module
    order, weight before bias. ``jax.flatten_util.ravel_pytree`` uses sorted keys
    (bias before kernel) and the (in, out) kernel layout, so two flat vectors can
    only be compared through this explicit map.
    """
    flat = traverse_util.flatten_dict(dict(params))
    pieces = []
    for name in torch_names:
        ndim_guess = 2 if name.endswith("weight") else 0
        path = torch_key_to_flax_path(name, ndim_guess)
        if path not in flat:  # a weight that is not 2-D keeps its name
            path = torch_key_to_flax_path(name, 0)
        array = _to_numpy(flat[path])
        pieces.append((array.T if _transposes(path) else array).ravel())
    return np.concatenate(pieces)


def check_against_state_dict(state_dict: Mapping, template: Mapping) -> None:
    """Raise ``ConversionError`` unless ``state_dict`` has ``template``'s keys and shapes."""
    for key, array in state_dict.items():
        if key not in template:
            raise ConversionError(
                f"extra key {key!r} (shape {array.shape}) is not in the torch model's "
                f"state_dict {sorted(template)}. Check that the weights were written for this model."
            )
        found = tuple(array.shape)
        expected = tuple(template[key].shape)
        if found != expected:
            raise ConversionError(_shape_message(key, expected, found))
    for key in template:
        if key not in state_dict:
            raise ConversionError(
                f"missing key {key!r} with shape {tuple(template[key].shape)} in the Flax "
                f"variables; pass every collection (params and buffers), not only params."
            )


def _check_shape(key: str, path: tuple, expected: tuple, found: tuple) -> None:
    if tuple(found) != tuple(expected):
        raise ConversionError(_shape_message(f"{key} -> {'/'.join(path)}", expected, found))


def _shape_message(name: str, expected: tuple, found: tuple) -> str:
    message = f"shape mismatch for {name}: expected {tuple(expected)}, found {tuple(found)}."
    if len(expected) == 2 and tuple(found) == tuple(expected)[::-1]:
        message += (" The weight looks transposed: torch Linear stores weight as (out, in), "
                    "Flax Dense stores kernel as (in, out); convert with these functions "
                    "instead of copying arrays by hand.")
    else:
        message += " Check that both models were built with the same layer sizes."
    return message


def _flat_shapes(variables: Mapping) -> dict[tuple, tuple]:
    flat = traverse_util.flatten_dict(dict(variables))
    # getattr first, because a ``jax.eval_shape`` template contains ShapeDtypeStructs.
    return {path: tuple(getattr(leaf, "shape", np.shape(leaf))) for path, leaf in flat.items()}


def _format_paths(paths) -> str:
    return "[" + ", ".join("/".join(p) for p in paths) + "]"


def _to_numpy(value) -> np.ndarray:
    """Return a copy of ``value`` (torch tensor, JAX array or numpy) as numpy.

    A copy, not a view: ``Tensor.numpy()`` shares memory with the tensor, and JAX
    on the CPU may alias a numpy buffer, so an in-place torch update (an
    optimizer step) would otherwise change the converted Flax variables too.
    """
    if hasattr(value, "detach"):  # torch.Tensor; duck-typed so this module never imports torch
        value = value.detach().cpu().resolve_conj().numpy()
    return np.array(value, copy=True)
