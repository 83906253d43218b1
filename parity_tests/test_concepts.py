"""Each tutorial concept shown on both sides, on the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import traverse_util

import flax_impl.concepts as flax_concepts
import torch_impl.concepts as torch_concepts
from twins.convert import state_dict_to_variables, torch_key_to_flax_path
from twins.registry import EXAMPLES


def _twins(name: str, dtype=np.float64):
    """Return (torch model, Flax model, variables with the torch weights, x as numpy)."""
    pair = EXAMPLES[name]
    torch_model = pair.torch_model(dtype=torch.float64 if dtype == np.float64 else torch.float32)
    flax_model = pair.flax_model(dtype)
    x, _ = pair.make_data(batch=5)
    template = jax.eval_shape(flax_model.init, jax.random.key(0), jnp.asarray(x, dtype))
    variables = state_dict_to_variables(torch_model.state_dict(), template, pair.buffers)
    return torch_model, flax_model, variables, x.astype(dtype)


def test_call_runs_hooks_forward_does_not():
    torch_model, flax_model, variables, x = _twins("tiny_linear")
    calls = []
    torch_model.register_forward_hook(lambda *args: calls.append(1))
    out_call, out_forward = torch_concepts.call_vs_forward(torch_model, torch.as_tensor(x))

    assert len(calls) == 1  # model(x) ran the hook, model.forward(x) did not
    torch.testing.assert_close(out_call, out_forward, rtol=0, atol=0)
    out_apply, out_bound = flax_concepts.call_vs_forward(flax_model, variables, jnp.asarray(x))
    np.testing.assert_array_equal(out_apply, out_bound)
    np.testing.assert_allclose(out_apply, out_call.detach().numpy(), rtol=1e-14, atol=0)


def test_hook_and_interceptor_record_same_intermediate():
    torch_model, flax_model, variables, x = _twins("mlp")
    hidden_torch = torch_concepts.record_intermediate(torch_model, torch.as_tensor(x), "net.0")
    hidden_flax = flax_concepts.record_intermediate(flax_model, variables, jnp.asarray(x), "net/layers_0")

    assert hidden_torch.shape == (5, 16)
    np.testing.assert_allclose(np.asarray(hidden_flax), hidden_torch.numpy(), rtol=1e-14, atol=1e-15)


def test_capture_intermediates_matches_hook():
    torch_model, flax_model, variables, x = _twins("mlp")
    hidden_torch = torch_concepts.record_intermediate(torch_model, torch.as_tensor(x), "net.0")
    _, state = flax_model.apply(variables, jnp.asarray(x), capture_intermediates=True,
                                mutable=["intermediates"])
    (hidden_flax,) = state["intermediates"]["net"]["layers_0"]["__call__"]
    np.testing.assert_allclose(np.asarray(hidden_flax), hidden_torch.numpy(), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_parameter_names_map_by_rule(name):
    torch_model, _, variables, _ = _twins(name)
    torch_names = torch_concepts.parameter_names(torch_model)
    flax_names = dict(flax_concepts.parameter_names(variables))

    mapped = {}
    for key, shape in torch_names:
        path = "/".join(torch_key_to_flax_path(key, len(shape)))
        mapped[path] = shape[::-1] if path.endswith("kernel") else shape
    assert mapped == flax_names


def test_parameter_names_exclude_buffers_and_plain_tensors():
    for name, absent in [("with_mask", "mask"), ("unregistered", "offset")]:
        torch_model, _, variables, _ = _twins(name)
        assert absent not in dict(torch_concepts.parameter_names(torch_model))
        assert absent not in dict(flax_concepts.parameter_names(variables))


@pytest.mark.parametrize("name", ["with_mask", "unregistered"])
def test_optimizer_sees_only_parameters(name):
    torch_model, _, variables, _ = _twins(name)
    optimizer = torch_concepts.make_optimizer(torch_model)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in torch_model.parameters()}
    assert id(getattr(torch_model, "mask", None)) not in optimized

    optimizer, opt_state = flax_concepts.make_optimizer(variables)
    grads = jax.tree_util.tree_map(jnp.ones_like, variables["params"])
    updates, _ = optimizer.update(grads, opt_state, variables["params"])
    assert jax.tree_util.tree_structure(updates) == jax.tree_util.tree_structure(variables["params"])
    # Adam keeps one moment per leaf it was given: the params tree, no buffers.
    adam_state = optax.adam(0.1).init(variables["params"])
    assert jax.tree_util.tree_structure(adam_state[0].mu) == jax.tree_util.tree_structure(variables["params"])


def test_buffer_unchanged_by_training_step():
    torch_model, flax_model, variables, x = _twins("with_mask")
    _, y = EXAMPLES["with_mask"].make_data(batch=5)
    optimizer = torch_concepts.make_optimizer(torch_model, lr=0.5)
    loss = ((torch_model(torch.as_tensor(x)) - torch.as_tensor(y)) ** 2).mean()
    loss.backward()
    optimizer.step()
    assert torch_model.mask.grad is None
    torch.testing.assert_close(torch_model.mask, torch.ones(3, dtype=torch.float64), rtol=0, atol=0)

    from flax_impl.training import make_train_step
    optimizer, opt_state = flax_concepts.make_optimizer(variables, lr=0.5)
    step = make_train_step(flax_model, optimizer)
    rest = {"buffers": variables["buffers"]}
    params, _, _ = step(variables["params"], opt_state, rest, jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_array_equal(rest["buffers"]["mask"], np.ones(3))
    assert not jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), params, variables["params"]))


def test_state_dict_saves_buffer_not_plain_tensor(tmp_path):
    for name, saved in [("with_mask", True), ("unregistered", False)]:
        torch_model, flax_model, variables, x = _twins(name)
        attribute = "mask" if saved else "offset"
        assert (attribute in torch_model.state_dict()) is saved
        flat = traverse_util.flatten_dict(variables, sep="/")
        assert any(path.endswith(attribute) for path in flat) is saved


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_save_load_round_trip(name, tmp_path):
    torch_model, flax_model, variables, x = _twins(name)
    torch_concepts.save_state_dict(torch_model, tmp_path / "model.pt")
    restored = EXAMPLES[name].torch_model(dtype=torch.float64, seed=123)
    torch_concepts.load_state_dict(restored, tmp_path / "model.pt")
    for key, value in torch_model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value, rtol=0, atol=0)

    flax_concepts.save_state_dict(variables, tmp_path / "model.msgpack")
    template = flax_model.init(jax.random.key(5), jnp.asarray(x))
    loaded = flax_concepts.load_state_dict(template, tmp_path / "model.msgpack")
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, variables)
    assert list(tmp_path.glob("*.tmp")) == []


def test_to_dtype_leaves_plain_tensor_behind():
    torch_model = EXAMPLES["unregistered"].torch_model(dtype=torch.float32)
    torch_concepts.move_to_device(torch_model, torch.float64)
    assert torch_model.linear.weight.dtype == torch.float64
    assert torch_model.offset.dtype == torch.float32  # not registered, so not cast

    masked = EXAMPLES["with_mask"].torch_model(dtype=torch.float32)
    torch_concepts.move_to_device(masked, torch.float64)
    assert masked.mask.dtype == torch.float64  # a buffer moves with the model


def test_device_put_moves_every_variable():
    _, _, variables, _ = _twins("with_mask")
    cpu = jax.devices("cpu")[0]
    moved = flax_concepts.move_to_device(variables, cpu)
    for leaf in jax.tree_util.tree_leaves(moved):
        assert leaf.devices() == {cpu}
    assert "buffers" in moved


@pytest.mark.gpu
def test_to_cuda_breaks_unregistered_forward():
    torch_model = EXAMPLES["unregistered"].torch_model(dtype=torch.float32)
    torch_concepts.move_to_device(torch_model, "cuda")
    with pytest.raises(RuntimeError, match="device"):
        torch_model(torch.ones(2, 3, device="cuda"))


def test_describe_lists_layers_on_both_sides():
    torch_model, flax_model, variables, x = _twins("mlp")
    text_torch = torch_concepts.describe(torch_model)
    text_flax = flax_concepts.describe(flax_model, jnp.asarray(x))

    assert "(0): Linear(in_features=4, out_features=16, bias=True)" in text_torch
    assert "(2): Linear(in_features=16, out_features=1, bias=True)" in text_torch
    assert "net/layers_0" in text_flax
    assert "net/layers_2" in text_flax
    n_torch = sum(p.numel() for p in torch_model.parameters())
    assert n_torch == 97
    assert f"Total Parameters: {n_torch}" in text_flax
