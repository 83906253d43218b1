"""A neutral checkpoint file that both twins can write and load.

The file is safetensors: tensors under their torch ``state_dict`` names, in
torch's layout (a Linear weight is (out, in)), with the layout recorded in the
metadata so a reader never has to guess. Flax variables are converted by the
rules in ``twins.convert`` on the way in and out.

safetensors has no complex128 dtype, so a complex array is stored as a real
array with a trailing axis of 2 (real, imaginary) and its name is listed under
the ``complex`` metadata key.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from flax import traverse_util
from safetensors import safe_open
from safetensors.numpy import save as save_bytes

from twins.atomic import write_atomically
from twins.convert import (BUFFERS, ConversionError, check_against_state_dict,
                           flax_path_to_torch_key, state_dict_to_variables,
                           variables_to_state_dict)

FORMAT = "nqs-twins-checkpoint/1"
LAYOUT = "torch_state_dict"


@dataclass
class Checkpoint:
    """The contents of a checkpoint file: torch-layout arrays and their metadata."""

    state_dict: dict[str, np.ndarray]
    buffers: tuple[str, ...]
    example: str


def save_checkpoint(path: str | os.PathLike, state_dict: Mapping, *, buffers=(), example: str = "") -> None:
    """Write a torch-layout ``state_dict`` (name -> array or tensor) to ``path`` atomically.

    ``buffers`` names the entries that are buffers (torch) / the ``buffers``
    collection (Flax); ``example`` is an optional registry name kept in the metadata.
    """
    tensors, complex_keys = {}, []
    for key, value in state_dict.items():
        array = value.detach().cpu().resolve_conj().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if np.iscomplexobj(array):
            array = np.stack([array.real, array.imag], axis=-1)
            complex_keys.append(key)
        tensors[key] = np.array(array, order="C")  # ascontiguousarray would make a scalar 1-D
    unknown = [b for b in buffers if b not in tensors]
    if unknown:
        raise ConversionError(f"buffer {unknown[0]!r} is not in the state_dict {sorted(tensors)}")
    metadata = {
        "format": FORMAT,
        "layout": LAYOUT,
        "buffers": json.dumps(list(buffers)),
        "complex": json.dumps(complex_keys),
        "example": example,
    }
    payload = save_bytes(tensors, metadata=metadata)

    write_atomically(path, payload)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; raise ValueError for another format."""
    with safe_open(os.fspath(path), framework="numpy") as reader:
        metadata = reader.metadata() or {}
        if metadata.get("format") != FORMAT or metadata.get("layout") != LAYOUT:
            raise ValueError(
                f"{path} is not an nqs-twins checkpoint (metadata format={metadata.get('format')!r}, "
                f"layout={metadata.get('layout')!r}); write it with twins.checkpoint.save_checkpoint")
        tensors = {key: reader.get_tensor(key) for key in reader.keys()}
    for key in json.loads(metadata["complex"]):
        pair = tensors[key]
        tensors[key] = pair[..., 0] + 1j * pair[..., 1]
    return Checkpoint(tensors, tuple(json.loads(metadata["buffers"])), metadata.get("example", ""))


def save_torch(model: torch.nn.Module, path, *, example: str = "") -> None:
    """Save ``model.state_dict()``; its buffers are recorded as buffers."""
    buffers = tuple(name for name, _ in model.named_buffers())
    save_checkpoint(path, model.state_dict(), buffers=buffers, example=example)


def load_torch(model: torch.nn.Module, path) -> torch.nn.Module:
    """Load a checkpoint into ``model`` in place after checking every key and shape."""
    checkpoint = load_checkpoint(path)
    template = model.state_dict()
    check_against_state_dict(checkpoint.state_dict, template)
    model.load_state_dict({k: torch.as_tensor(v, dtype=template[k].dtype)
                           for k, v in checkpoint.state_dict.items()}, strict=True)
    return model


def save_flax(variables: Mapping, path, *, example: str = "") -> None:
    """Save Flax ``variables`` (every collection) in torch layout."""
    state_dict = variables_to_state_dict(variables)
    flat = traverse_util.flatten_dict(dict(variables))
    buffers = tuple(flax_path_to_torch_key(p[1:]) for p in flat if p[0] == BUFFERS)
    save_checkpoint(path, state_dict, buffers=buffers, example=example)


def load_flax(path, template: Mapping) -> dict:
    """Return the checkpoint at ``path`` as Flax variables shaped like ``template``.

    Raises ``ConversionError`` naming the key, both shapes and the fix for a
    missing, extra or mis-shaped entry.
    """
    checkpoint = load_checkpoint(path)
    return state_dict_to_variables(checkpoint.state_dict, template, checkpoint.buffers)
