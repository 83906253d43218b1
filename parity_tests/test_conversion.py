"""Weight conversion rules, error messages, the neutral checkpoint, weight layout and Sequential naming."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util
from jax.flatten_util import ravel_pytree

from twins import checkpoint
from twins.convert import (ConversionError, flax_params_to_torch_vector,
                           state_dict_to_variables, variables_to_state_dict)
from twins.registry import EXAMPLES

NAMES = list(EXAMPLES)


def _template(pair, dtype=np.float64):
    x = jnp.zeros((1, *pair.input_shape), dtype)
    return jax.eval_shape(pair.flax_model(dtype).init, jax.random.key(0), x)


def _assert_state_dicts_equal(ours, reference):
    assert set(ours) == set(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(np.asarray(ours[key]), value.detach().numpy(), err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_torch_flax_torch_round_trip(name):
    pair = EXAMPLES[name]
    model = pair.torch_model()
    variables = state_dict_to_variables(model.state_dict(), _template(pair), pair.buffers)
    _assert_state_dicts_equal(variables_to_state_dict(variables, model.state_dict()), model.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_flax_torch_flax_round_trip(name):
    pair = EXAMPLES[name]
    flax_model = pair.flax_model(np.float64)
    variables = flax_model.init(jax.random.key(3), jnp.zeros((1, *pair.input_shape)))
    state_dict = variables_to_state_dict(variables, pair.torch_model().state_dict())
    back = state_dict_to_variables(state_dict, variables, pair.buffers)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(variables)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, variables)


def test_buffer_goes_to_buffers_collection():
    pair = EXAMPLES["with_mask"]
    variables = state_dict_to_variables(pair.torch_model().state_dict(), _template(pair), pair.buffers)
    assert set(variables) == {"params", "buffers"}
    np.testing.assert_array_equal(variables["buffers"]["mask"], np.ones(3))


def test_linear_layout_is_transposed():
    """A non-symmetric weight copied without a transpose gives the wrong output."""
    model = torch.nn.Linear(2, 2, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model.bias.zero_()
    x = np.array([[1.0, 0.0]])
    torch_out = model(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_array_equal(torch_out, [[1.0, 3.0]])

    dense = __import__("flax.linen", fromlist=["Dense"]).Dense(2, param_dtype=jnp.float64)
    template = jax.eval_shape(dense.init, jax.random.key(0), jnp.asarray(x))
    params = state_dict_to_variables({"weight": model.weight, "bias": model.bias}, template["params"])
    np.testing.assert_array_equal(dense.apply({"params": params}, x), [[1.0, 3.0]])

    naive = {"kernel": model.weight.detach().numpy(), "bias": np.zeros(2)}
    np.testing.assert_array_equal(dense.apply({"params": naive}, x), [[1.0, 2.0]])


def test_sequential_names_skip_activation_index():
    """torch net.0/net.2 and Flax layers_0/layers_2 both count the ReLU."""
    pair = EXAMPLES["mlp"]
    variables = state_dict_to_variables(pair.torch_model().state_dict(), _template(pair))
    assert set(variables["params"]["net"]) == {"layers_0", "layers_2"}


def test_flat_vectors_compare_only_through_index_map():
    """ravel_pytree's order differs from parameters_to_vector; the explicit map agrees."""
    pair = EXAMPLES["mlp"]
    model = pair.torch_model()
    params = state_dict_to_variables(model.state_dict(), _template(pair))["params"]
    torch_vector = torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()

    names = [name for name, _ in model.named_parameters()]
    np.testing.assert_array_equal(flax_params_to_torch_vector(params, names), torch_vector)
    raveled, _ = ravel_pytree(params)
    assert raveled.shape == torch_vector.shape
    assert not np.array_equal(np.asarray(raveled), torch_vector)


def test_missing_key_names_key_and_fix():
    pair = EXAMPLES["with_mask"]
    state_dict = dict(pair.torch_model().state_dict())
    del state_dict["mask"]
    with pytest.raises(ConversionError, match=r"missing torch key 'mask'.*\(3,\).*buffers included"):
        state_dict_to_variables(state_dict, _template(pair), pair.buffers)


def test_extra_key_names_key():
    pair = EXAMPLES["tiny_linear"]
    state_dict = {**pair.torch_model().state_dict(), "linear.scale": torch.ones(2)}
    with pytest.raises(ConversionError, match=r"extra torch key 'linear.scale'.*shape \(2,\)"):
        state_dict_to_variables(state_dict, _template(pair))


def test_buffer_not_declared_is_reported():
    pair = EXAMPLES["with_mask"]
    with pytest.raises(ConversionError, match=r"extra torch key 'mask'.*buffers are listed as buffers"):
        state_dict_to_variables(pair.torch_model().state_dict(), _template(pair), buffers=())


def test_transposed_weight_gets_layout_hint():
    pair = EXAMPLES["tiny_linear"]
    variables = jax.tree_util.tree_map(np.asarray, pair.flax_model(np.float64).init(
        jax.random.key(0), jnp.zeros((1, 3))))
    state_dict = variables_to_state_dict(variables)
    state_dict["linear.weight"] = state_dict["linear.weight"].T  # kernel layout by mistake
    with pytest.raises(ConversionError, match=r"expected \(3, 2\), found \(2, 3\).*transposed"):
        state_dict_to_variables(state_dict, variables)


def test_wrong_size_names_both_shapes():
    pair = EXAMPLES["mlp"]
    state_dict = dict(pair.torch_model().state_dict())
    state_dict["net.0.bias"] = torch.zeros(8)
    with pytest.raises(ConversionError, match=r"net.0.bias -> params/net/layers_0/bias: expected \(16,\), found \(8,\)"):
        state_dict_to_variables(state_dict, _template(pair))


def test_flax_to_torch_checks_template():
    pair = EXAMPLES["with_mask"]
    variables = pair.flax_model(np.float64).init(jax.random.key(0), jnp.zeros((1, 3)))
    with pytest.raises(ConversionError, match=r"missing key 'mask'.*every collection"):
        variables_to_state_dict({"params": variables["params"]}, pair.torch_model().state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_torch_to_flax(name, tmp_path):
    pair = EXAMPLES[name]
    model = pair.torch_model()
    path = tmp_path / "model.safetensors"
    checkpoint.save_torch(model, path, example=name)
    variables = checkpoint.load_flax(path, _template(pair))
    x, _ = pair.make_data(batch=4)
    expected = model(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(pair.flax_model(np.float64).apply(variables, x), expected, rtol=1e-14)
    assert checkpoint.load_checkpoint(path).example == name


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_flax_to_torch(name, tmp_path):
    pair = EXAMPLES[name]
    variables = pair.flax_model(np.float64).init(jax.random.key(7), jnp.zeros((1, *pair.input_shape)))
    path = tmp_path / "model.safetensors"
    checkpoint.save_flax(variables, path)
    model = checkpoint.load_torch(pair.torch_model(seed=99), path)
    x, _ = pair.make_data(batch=4)
    expected = np.asarray(pair.flax_model(np.float64).apply(variables, x))
    np.testing.assert_allclose(model(torch.as_tensor(x)).detach().numpy(), expected, rtol=1e-14)


def test_checkpoint_keeps_complex_values(tmp_path):
    state_dict = {"visible_bias": np.array([1 + 2j, -3 - 0.5j]), "Dense.weight": np.ones((2, 2)) * (1 - 1j)}
    checkpoint.save_checkpoint(tmp_path / "c.safetensors", state_dict)
    loaded = checkpoint.load_checkpoint(tmp_path / "c.safetensors").state_dict
    for key, value in state_dict.items():
        assert loaded[key].dtype == np.complex128
        np.testing.assert_array_equal(loaded[key], value)


def test_checkpoint_load_into_wrong_model_names_key(tmp_path):
    path = tmp_path / "mlp.safetensors"
    checkpoint.save_torch(EXAMPLES["mlp"].torch_model(), path)
    with pytest.raises(ConversionError, match=r"extra key 'net\.0\.(weight|bias)'.*written for this model"):
        checkpoint.load_torch(EXAMPLES["tiny_linear"].torch_model(), path)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    checkpoint.save_torch(EXAMPLES["tiny_linear"].torch_model(seed=1), path)
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_torch(EXAMPLES["tiny_linear"].torch_model(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_foreign_safetensors_file_is_rejected(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.ones(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an nqs-twins checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "other.safetensors")


def test_variables_are_flat_paths():
    pair = EXAMPLES["mlp"]
    flat = traverse_util.flatten_dict(_template(pair), sep="/")
    assert sorted(flat) == ["params/net/layers_0/bias", "params/net/layers_0/kernel",
                            "params/net/layers_2/bias", "params/net/layers_2/kernel"]


def test_checkpoint_file_mode_follows_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        checkpoint.save_torch(EXAMPLES["scale"].torch_model(), tmp_path / "scale.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "scale.safetensors").stat().st_mode & 0o777 == 0o644
