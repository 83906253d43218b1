"""``twins params NAME``: torch parameter names beside the Flax paths."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from rich.console import Console
from rich.table import Table

from twins.convert import torch_key_to_flax_path
from twins.registry import UnknownExampleError, get_example


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "params", help="print torch state_dict names and shapes beside the Flax variable paths")
    parser.add_argument("name", help="example name (see `twins list`)")
    return parser


def parameter_table(name: str) -> Table:
    """Return a table pairing each torch state_dict entry with its Flax path."""
    pair = get_example(name)
    torch_model = pair.torch_model()
    flax_model = pair.flax_model()
    x = jnp.zeros((1, *pair.input_shape), np.float64)
    flax_shapes = traverse_util.flatten_dict(jax.eval_shape(flax_model.init, jax.random.key(0), x))

    table = Table("torch name", "torch shape", "kind", "Flax path", "Flax shape", title=pair.name)
    for key, tensor in torch_model.state_dict().items():
        collection = "buffers" if key in pair.buffers else "params"
        path = (collection, *torch_key_to_flax_path(key, tensor.ndim))
        flax_shape = flax_shapes[path].shape if path in flax_shapes else "missing"
        kind = "buffer" if key in pair.buffers else "parameter"
        table.add_row(key, str(tuple(tensor.shape)), kind, "/".join(path), str(flax_shape))
    return table


def run(args) -> int:
    try:
        table = parameter_table(args.name)
    except UnknownExampleError as error:
        Console(stderr=True).print(f"error: {error}")
        return 2
    Console().print(table)
    return 0
