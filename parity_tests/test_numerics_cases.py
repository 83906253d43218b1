"""Init laws, float64 handling and ReLU at zero: the cases where naive ports drift."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from scipy import stats

from flax_impl.initializers import torch_dense, torch_linear_bias_init, torch_linear_kernel_init
from twins.convert import state_dict_to_variables
from twins.registry import EXAMPLES

# A KS p-value below this rejects "same distribution"; with 4096 draws the
# Flax default law (std sqrt(3) times larger) gives p < 1e-100.
KS_P_MIN = 1e-3
FAN_IN = 64


def test_kernel_init_is_torch_uniform_law():
    """The Flax kernel initializer draws U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / np.sqrt(FAN_IN)
    kernel = np.asarray(torch_linear_kernel_init(jax.random.key(0), (FAN_IN, FAN_IN), jnp.float64)).ravel()
    assert stats.kstest(kernel, "uniform", args=(-bound, 2 * bound)).pvalue > KS_P_MIN

    torch.manual_seed(0)
    torch_weight = torch.nn.Linear(FAN_IN, FAN_IN, dtype=torch.float64).weight.detach().numpy().ravel()
    assert stats.ks_2samp(kernel, torch_weight).pvalue > KS_P_MIN


def test_flax_default_kernel_init_is_rejected():
    """The same KS check rejects Flax's default law, so it can fail."""
    bound = 1 / np.sqrt(FAN_IN)
    default = nn.initializers.lecun_normal()(jax.random.key(0), (FAN_IN, FAN_IN), jnp.float64)
    assert stats.kstest(np.asarray(default).ravel(), "uniform", args=(-bound, 2 * bound)).pvalue < KS_P_MIN


def test_bias_init_is_torch_uniform_law():
    bound = 1 / np.sqrt(FAN_IN)
    bias = np.asarray(torch_linear_bias_init(FAN_IN)(jax.random.key(1), (4096,), jnp.float64))
    assert stats.kstest(bias, "uniform", args=(-bound, 2 * bound)).pvalue > KS_P_MIN
    torch.manual_seed(1)
    torch_bias = torch.nn.Linear(FAN_IN, 4096, dtype=torch.float64).bias.detach().numpy()
    assert stats.ks_2samp(bias, torch_bias).pvalue > KS_P_MIN


class _TanhMLP(nn.Module):
    """64 -> 64 -> 1 with tanh, initialised with torch's law or Flax's default."""

    torch_law: bool

    @nn.compact
    def __call__(self, x):
        if self.torch_law:
            hidden, out = torch_dense(64, 64, jnp.float64), torch_dense(1, 64, jnp.float64)
        else:
            hidden, out = nn.Dense(64, param_dtype=jnp.float64), nn.Dense(1, param_dtype=jnp.float64)
        return out(jnp.tanh(hidden(x)))


def test_output_scale_follows_torch_law():
    """Averaged over 30 inits, a torch-law Flax MLP's output std matches torch's.

    Measured: torch 0.262 (spread 0.026 per init), torch-law Flax 0.256, Flax
    default 0.609. The mean over 30 inits has a standard error near 0.005.
    """
    x = np.random.default_rng(0).standard_normal((1000, FAN_IN))
    torch_stds = []
    for seed in range(30):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(64, 64, dtype=torch.float64), torch.nn.Tanh(),
                                    torch.nn.Linear(64, 1, dtype=torch.float64))
        torch_stds.append(model(torch.as_tensor(x)).std().item())

    def flax_std(torch_law, seed):
        model = _TanhMLP(torch_law)
        return float(jnp.std(model.apply(model.init(jax.random.key(seed), x), x)))

    torch_mean = np.mean(torch_stds)
    assert np.mean([flax_std(True, s) for s in range(30)]) == pytest.approx(torch_mean, rel=0.1)
    assert np.mean([flax_std(False, s) for s in range(30)]) > 2 * torch_mean


def test_float64_survives_without_silent_downcast():
    """With x64 on, float64 inputs stay float64 and tiny terms survive a sum."""
    x = np.array([1.0, 1e-8, -1.0])
    assert jnp.asarray(x).dtype == jnp.float64
    assert float(jnp.sum(jnp.asarray(x))) == pytest.approx(9.999999939e-09, rel=1e-9)
    assert torch.as_tensor(x).sum().item() == pytest.approx(9.999999939e-09, rel=1e-9)

    e_loc = np.array([-0.4438561897, -0.4438561896])
    assert float(jnp.mean(jnp.asarray(e_loc))) == pytest.approx(-0.443856189650, abs=1e-12)


def test_float64_without_x64_downcasts_silently():
    """The failure mode itself, in a fresh process with x64 off."""
    code = ("import jax, jax.numpy as jnp, numpy as np; "
            "x = jnp.asarray(np.array([1.0, 1e-8, -1.0])); print(x.dtype, float(jnp.sum(x)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"JAX_ENABLE_X64": "0", "PATH": "", "JAX_PLATFORMS": "cpu"})
    assert result.stdout.split() == ["float32", "0.0"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_flax_variables_have_requested_dtype(dtype):
    pair = EXAMPLES["mlp"]
    variables = pair.flax_model(dtype).init(jax.random.key(0), jnp.zeros((1, 4), dtype))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {np.dtype(dtype)}


def test_relu_gradient_at_exact_zero():
    """A pre-activation of exactly 0 gets derivative 0 on both sides."""
    pair = EXAMPLES["mlp"]
    model = pair.torch_model()
    with torch.no_grad():
        model.net[0].weight[:4].zero_()  # units 0-3: pre-activation = bias = 0 exactly
        model.net[0].bias[:4].zero_()
    x = torch.as_tensor(pair.make_data(batch=8)[0])
    assert torch.all(model.net[0](x)[:, :4] == 0)

    model.zero_grad()
    ((model(x) - 1.0) ** 2).mean().backward()
    torch_grad = model.net[0].weight.grad.numpy()
    template = jax.eval_shape(pair.flax_model(np.float64).init, jax.random.key(0), jnp.zeros((1, 4)))
    variables = state_dict_to_variables(model.state_dict(), template)

    def loss(params):
        return jnp.mean((pair.flax_model(np.float64).apply({"params": params}, jnp.asarray(x.numpy())) - 1.0) ** 2)

    flax_grad = np.asarray(jax.grad(loss)(variables["params"])["net"]["layers_0"]["kernel"]).T
    np.testing.assert_array_equal(torch_grad[:4], 0.0)
    np.testing.assert_array_equal(flax_grad[:4], 0.0)
    np.testing.assert_allclose(flax_grad, torch_grad, rtol=1e-13, atol=1e-16)


def test_maximum_splits_tie_at_zero():
    """The pitfall the MLP avoids by using jax.nn.relu."""
    assert float(jax.grad(jax.nn.relu)(0.0)) == 0.0
    assert float(jax.grad(lambda v: jnp.maximum(v, 0.0))(0.0)) == 0.5

