"""The concept map: each tutorial idea in PyTorch and in JAX/Flax, and where the twins show it.

Each ``Concept`` names its two forms, the difference that trips people and one
runnable snippet per side. Where the twins show it is computed from the
sources. A ``Locator`` names a module, a function or ``Class.method`` in it and
a piece of text, and the line is the first code line of that definition that
contains the text. ``docs/concepts.md`` is generated from this registry
(``twins show --concepts-md docs/concepts.md``), and a test checks that the
committed file is current and runs every snippet in it.
"""

import ast
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from twins.atomic import write_atomically
from twins.sidebyside.views import FLAX_PACKAGE, TORCH_PACKAGE, module_path, repository_root


class LocatorError(LookupError):
    """A concept points at a definition or text that the twin source no longer has."""


@dataclass(frozen=True)
class Location:
    """A resolved place in a twin file: the path, the 1-based line and its text."""

    path: Path
    line: int
    code: str

    def relative(self) -> str:
        return f"{self.path.relative_to(repository_root())}:{self.line}"


@dataclass(frozen=True)
class Locator:
    """``module`` (file stem), ``symbol`` (``func`` or ``Class.method``) and ``needle`` text."""

    module: str
    symbol: str
    needle: str

    def resolve(self, package: str) -> Location:
        """Return the first line of ``symbol`` in ``package/module.py`` containing ``needle``."""
        path = module_path(package, self.module)
        start, end, docstring = _definition_span(path, self.symbol)
        lines = path.read_text().splitlines()
        for number in range(start, end + 1):
            # Only code counts: the docstring and comments name things they do not do.
            if number in docstring or lines[number - 1].lstrip().startswith("#"):
                continue
            if self.needle in lines[number - 1]:
                return Location(path, number, lines[number - 1].strip())
        raise LocatorError(f"{path.name}: {self.symbol} (lines {start}-{end}) no longer contains "
                           f"{self.needle!r}; update the locator in twins/concepts.py")


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _definition_span(path: Path, symbol: str) -> tuple[int, int, range]:
    """Return the first and last line of ``symbol`` in ``path`` and its docstring's lines."""
    if not path.exists():
        raise LocatorError(f"{path} not found; a concept points at it")
    body = _tree(path).body
    node = None
    for part in symbol.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise LocatorError(f"{path}: no definition {symbol!r} (missing {part!r}); "
                               f"update the locator in twins/concepts.py")
        body = node.body
    first = node.body[0]
    docstring = range(0)
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        docstring = range(first.lineno, first.end_lineno + 1)
    return node.lineno, node.end_lineno, docstring


@dataclass(frozen=True)
class Concept:
    """One tutorial idea written both ways."""

    slug: str
    title: str
    torch_form: str
    flax_form: str
    trap: str
    torch_at: Locator
    flax_at: Locator
    torch_snippet: str
    flax_snippet: str

    def torch_location(self) -> Location:
        return self.torch_at.resolve(TORCH_PACKAGE)

    def flax_location(self) -> Location:
        return self.flax_at.resolve(FLAX_PACKAGE)


CONCEPTS: tuple[Concept, ...] = (
    Concept(
        "module-function", "Module as a parametrised function",
        "`model(x)` runs `forward` with the parameters stored on the module",
        "`model.apply(variables, x)`: the module holds no parameters, they are passed in",
        "A Flax module is a description: calling `model(x)` outside `apply` or `bind` raises, "
        "and `init` returns the parameters instead of storing them. In torch, `model(x)` runs "
        "hooks but `model.forward(x)` skips them.",
        Locator("concepts", "call_vs_forward", "model(x)"),
        Locator("concepts", "call_vs_forward", "model.apply"),
        """\
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(3, 2)
x = torch.ones(4, 3)
assert torch.equal(model(x), model.forward(x))  # same values; only model(x) runs hooks
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

model = nn.Dense(2)
x = jnp.ones((4, 3))
variables = model.init(jax.random.key(0), x)  # the parameters live here, not on model
y = model.apply(variables, x)
assert y.shape == (4, 2)
assert jnp.array_equal(y, model.bind(variables)(x))
""",
    ),
    Concept(
        "submodule-registration", "Parameter registration through submodules",
        "assigning an `nn.Linear` to `self.linear` in `__init__` registers its parameters",
        "assigning an `nn.Dense` in `setup` (or creating it in `@nn.compact`) names a sub-tree",
        "The Flax `kernel` is (in, out), the transpose of torch's `weight` (out, in), and "
        "`nn.Dense` defaults to a truncated-normal kernel and a zero bias, not torch's "
        "U(-1/sqrt(fan_in), 1/sqrt(fan_in)).",
        Locator("tiny_linear", "TinyLinear.__init__", "nn.Linear"),
        Locator("tiny_linear", "TinyLinear.setup", "self.linear"),
        """\
from torch import nn

class TinyLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

shapes = {name: tuple(p.shape) for name, p in TinyLinear().named_parameters()}
assert shapes == {"linear.weight": (2, 3), "linear.bias": (2,)}
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

class TinyLinear(nn.Module):
    def setup(self):
        self.linear = nn.Dense(2)

    def __call__(self, x):
        return self.linear(x)

params = TinyLinear().init(jax.random.key(0), jnp.ones((1, 3)))["params"]
assert params["linear"]["kernel"].shape == (3, 2)  # (in, out)
assert params["linear"]["bias"].shape == (2,)
""",
    ),
    Concept(
        "parameter", "nn.Parameter",
        "`self.weight = nn.Parameter(tensor)`",
        "`self.param('weight', init_fn, shape, dtype)`",
        "`self.param` takes an initializer function and a shape, not a value, and its value "
        "appears only in the variables that `init` returns.",
        Locator("scale", "Scale.__init__", "nn.Parameter"),
        Locator("scale", "Scale.__call__", "self.param"),
        """\
import torch
from torch import nn

class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.weight * x

assert [name for name, _ in Scale().named_parameters()] == ["weight"]
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

class Scale(nn.Module):
    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.ones, ())
        return weight * x

variables = Scale().init(jax.random.key(0), jnp.ones(2))
assert list(variables["params"]) == ["weight"]
assert variables["params"]["weight"] == 1.0
""",
    ),
    Concept(
        "unregistered", "Unregistered tensors",
        "a plain tensor attribute `self.offset = torch.ones(3)`",
        "a plain array attribute `self.offset = jnp.ones(3)` set in `setup`",
        "torch leaves it out of `parameters()`, `state_dict()` and `.to(...)`, so it stays on "
        "the old device and dtype. In Flax it is not in `variables`: `jax.jit` bakes it in as "
        "a constant, and nothing saves or moves it.",
        Locator("unregistered", "Unregistered.__init__", "self.offset"),
        Locator("unregistered", "Unregistered.setup", "self.offset"),
        """\
import torch
from torch import nn

class Unregistered(nn.Module):
    def __init__(self):
        super().__init__()
        self.offset = torch.ones(3)

model = Unregistered().double()
assert "offset" not in model.state_dict()
assert model.offset.dtype == torch.float32  # .double() did not cast it
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

class Unregistered(nn.Module):
    def setup(self):
        self.offset = jnp.ones(3)

    def __call__(self, x):
        return x + self.offset

variables = Unregistered().init(jax.random.key(0), jnp.ones(3))
assert variables == {}  # the offset is not a variable
""",
    ),
    Concept(
        "buffer", "Buffers",
        "`self.register_buffer('mask', tensor)`",
        "`self.variable('buffers', 'mask', init_fn, shape)`, a collection beside `params`",
        "Differentiate with respect to `variables['params']` only and pass the other "
        "collections back to `apply`; a buffer dropped from `variables` makes `apply` fail.",
        Locator("with_mask", "WithMask.__init__", "register_buffer"),
        Locator("with_mask", "WithMask.setup", "self.variable"),
        """\
import torch
from torch import nn

class WithMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.ones(3))

model = WithMask()
assert "mask" in model.state_dict()
assert list(model.parameters()) == []
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

class WithMask(nn.Module):
    def setup(self):
        self.mask = self.variable("buffers", "mask", jnp.ones, (3,))

    def __call__(self, x):
        return x * self.mask.value

variables = WithMask().init(jax.random.key(0), jnp.ones(3))
assert set(variables) == {"buffers"}
assert variables["buffers"]["mask"].shape == (3,)
""",
    ),
    Concept(
        "nested-modules", "Nested modules",
        "`nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))`",
        "`nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])`",
        "Names differ: torch `net.0.weight`, Flax `net/layers_0/kernel`. Flax counts the "
        "activation in the index too, so the indices match torch's.",
        Locator("mlp", "MLP.__init__", "nn.Sequential"),
        Locator("mlp", "MLP.setup", "nn.Sequential"),
        """\
from torch import nn

net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
assert [name for name, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

net = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])
params = net.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
assert sorted(params) == ["layers_0", "layers_2"]
""",
    ),
    Concept(
        "hooks", "Forward hooks",
        "`module.register_forward_hook(fn)`, removed through its handle",
        "`with nn.intercept_methods(fn):` or `apply(..., capture_intermediates=True)`",
        "An interceptor sees every method call of every module and must pick its target by "
        "`context.module.path`; it is active only inside the `with` block. A torch hook stays "
        "until `handle.remove()`.",
        Locator("concepts", "record_intermediate", "register_forward_hook"),
        Locator("concepts", "record_intermediate", "intercept_methods"),
        """\
import torch
from torch import nn

net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
seen = []
handle = net[0].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
net(torch.ones(2, 4))
handle.remove()
net(torch.ones(2, 4))
assert seen == [torch.Size([2, 3])]
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

net = nn.Sequential([nn.Dense(3), nn.relu])
variables = net.init(jax.random.key(0), jnp.ones((2, 4)))
_, state = net.apply(variables, jnp.ones((2, 4)), capture_intermediates=True)
assert state["intermediates"]["layers_0"]["__call__"][0].shape == (2, 3)
""",
    ),
    Concept(
        "named-parameters", "Parameter names",
        "`model.named_parameters()`: dotted names in registration order",
        "`traverse_util.flatten_dict(variables['params'])`: paths of a nested dict",
        "Flax paths are tuples (or `/`-joined strings) and a 2-D `kernel` is the transpose of "
        "torch's `weight`. JAX tree functions visit dict keys in sorted order (`bias` before "
        "`kernel`), not in creation order, so compare names as sorted lists.",
        Locator("concepts", "parameter_names", "named_parameters"),
        Locator("concepts", "parameter_names", "flatten_dict"),
        """\
from torch import nn

model = nn.Sequential(nn.Linear(2, 2))
assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import traverse_util

model = nn.Sequential([nn.Dense(2)])
params = model.init(jax.random.key(0), jnp.ones((1, 2)))["params"]
flat = traverse_util.flatten_dict(params, sep="/")
assert sorted(flat) == ["layers_0/bias", "layers_0/kernel"]
""",
    ),
    Concept(
        "state-dict", "state_dict save and load",
        "`torch.save(model.state_dict(), f)`, then `model.load_state_dict(torch.load(f))`",
        "`flax.serialization.to_bytes(variables)`, then `from_bytes(template, data)`",
        "`from_bytes` needs a template with the target structure (from `init` or "
        "`jax.eval_shape`) and returns a new tree; nothing is loaded in place.",
        Locator("concepts", "save_state_dict", "state_dict()"),
        Locator("concepts", "save_state_dict", "to_bytes"),
        """\
import io

import torch
from torch import nn

model = nn.Linear(2, 2)
buffer = io.BytesIO()
torch.save(model.state_dict(), buffer)
buffer.seek(0)
copy = nn.Linear(2, 2)
copy.load_state_dict(torch.load(buffer, weights_only=True))
assert torch.equal(copy.weight, model.weight)
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import serialization

model = nn.Dense(2)
variables = model.init(jax.random.key(0), jnp.ones((1, 2)))
data = serialization.to_bytes(variables)
template = model.init(jax.random.key(1), jnp.ones((1, 2)))
restored = serialization.from_bytes(template, data)
assert jnp.array_equal(restored["params"]["kernel"], variables["params"]["kernel"])
""",
    ),
    Concept(
        "devices", "Devices",
        "`model.to(device)` moves parameters and buffers in place",
        "`jax.device_put(variables, device)` returns a copy on the device",
        "JAX arrays are immutable, so the moved tree is a new value that must be used from "
        "then on. Attributes outside `variables` (or, in torch, unregistered tensors) are not moved.",
        Locator("concepts", "move_to_device", "model.to("),
        Locator("concepts", "move_to_device", "jax.device_put"),
        """\
import torch
from torch import nn

model = nn.Linear(2, 2)
assert model.to("cpu") is model  # in place: the same module comes back
assert model.weight.device.type == "cpu"
""",
        """\
import jax
import jax.numpy as jnp

variables = {"params": {"w": jnp.ones(2)}}
device = jax.devices("cpu")[0]
moved = jax.device_put(variables, device)
assert moved["params"]["w"].devices() == {device}
""",
    ),
    Concept(
        "autograd", "Autograd",
        "`loss.backward()` accumulates into each parameter's `.grad`",
        "`jax.value_and_grad(loss_fn)(params)` returns the gradient tree",
        "torch adds to `.grad` on every `backward()`, so gradients are cleared with "
        "`zero_grad` first. `jax.grad` is a function transformation: there is nothing to "
        "clear, and for complex parameters it returns the conjugate of torch's `.grad`.",
        Locator("training", "loss_and_grads", ".backward()"),
        Locator("training", "loss_and_grads", "jax.value_and_grad"),
        """\
import torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
(w ** 2).sum().backward()
(w ** 2).sum().backward()
assert torch.equal(w.grad, torch.tensor([4.0, 8.0]))  # two backward calls accumulate
""",
        """\
import jax
import jax.numpy as jnp

def loss_fn(w):
    return jnp.sum(w ** 2)

loss, grad = jax.value_and_grad(loss_fn)(jnp.array([1.0, 2.0]))
assert jnp.array_equal(grad, jnp.array([2.0, 4.0]))
""",
    ),
    Concept(
        "optimizer", "Optimizer",
        "`torch.optim.SGD(model.parameters(), lr)`; `optimizer.step()` updates in place",
        "`optax.sgd(lr)`; `updates, state = optimizer.update(grads, state, params)`, then "
        "`optax.apply_updates`",
        "optax is pure: `update` returns the updates and a new optimizer state, and the "
        "caller keeps both. An optimizer only sees what it is given: torch the registered "
        "parameters, optax the tree passed to `init`.",
        Locator("training", "train", "optimizer.step()"),
        Locator("training", "make_train_step", "optax.apply_updates"),
        """\
import torch

w = torch.nn.Parameter(torch.tensor([1.0]))
optimizer = torch.optim.SGD([w], lr=0.1)
optimizer.zero_grad()
(w ** 2).sum().backward()
optimizer.step()
assert torch.allclose(w.detach(), torch.tensor([0.8]))
""",
        """\
import jax
import jax.numpy as jnp
import optax

params = jnp.array([1.0])
optimizer = optax.sgd(0.1)
state = optimizer.init(params)
grads = jax.grad(lambda w: jnp.sum(w ** 2))(params)
updates, state = optimizer.update(grads, state, params)
params = optax.apply_updates(params, updates)
assert jnp.allclose(params, jnp.array([0.8]))
""",
    ),
    Concept(
        "complex-gradients", "Complex gradients",
        "for a real loss L of z = x + iy, `z.grad` is dL/dx + i dL/dy",
        "`jax.grad` returns the conjugate, dL/dx - i dL/dy",
        "An optimizer fed the raw JAX gradient moves the imaginary part the wrong way; "
        "conjugate it first. Adam and RMSprop also differ: torch keeps moments per real "
        "component, optax one |g|^2 per complex entry.",
        Locator("vmc", "log_derivatives", ".conj()"),
        Locator("vmc", "log_derivatives", "if jnp.iscomplexobj(p):"),
        """\
import torch

z = torch.tensor(3.0 + 4.0j, requires_grad=True)
(z.abs() ** 2).backward()
assert z.grad == torch.tensor(6.0 + 8.0j)  # dL/dx + i dL/dy
""",
        """\
import jax
import jax.numpy as jnp

grad = jax.grad(lambda z: jnp.abs(z) ** 2)(jnp.asarray(3.0 + 4.0j))
assert grad == 6.0 - 8.0j  # the conjugate of torch's .grad
""",
    ),
    Concept(
        "log-cosh", "A stable log cosh",
        "`y + torch.log1p(torch.exp(-2 y)) - log 2` with y = x or -x so that Re y >= 0",
        "the same formula with `jnp.log1p` and `jnp.exp`",
        "`log(cosh(x))` overflows to inf once cosh does (x > ~710 in float64, ~89 in float32). "
        "For complex x two correct formulas may differ by 2 pi i, so compare log psi modulo "
        "2 pi i or compare psi ratios.",
        Locator("ansatz", "log_cosh", "log1p"),
        Locator("ansatz", "log_cosh", "log1p"),
        """\
import math

import torch

x = torch.tensor(800.0, dtype=torch.float64)
assert torch.isinf(torch.log(torch.cosh(x)))
stable = x + torch.log1p(torch.exp(-2.0 * x)) - math.log(2.0)
assert abs(stable.item() - 799.3068528194401) < 1e-12
""",
        """\
import math

import jax.numpy as jnp

x = jnp.asarray(100.0, dtype=jnp.float32)
assert jnp.isinf(jnp.log(jnp.cosh(x)))
stable = x + jnp.log1p(jnp.exp(-2.0 * x)) - math.log(2.0)
assert abs(float(stable) - 99.30685) < 1e-4
""",
    ),
    Concept(
        "summary", "Printing a model",
        "`print(model)`: the module tree with each layer's arguments",
        "`nn.tabulate(model, key)(x)`: a table of paths, shapes and parameter counts",
        "`nn.tabulate` traces the model, so it needs an example input; shapes are known only "
        "once an input is given.",
        Locator("concepts", "describe", "str(model)"),
        Locator("concepts", "describe", "nn.tabulate"),
        """\
from torch import nn

text = str(nn.Sequential(nn.Linear(4, 3)))
assert "Linear(in_features=4, out_features=3, bias=True)" in text
""",
        """\
import jax
import jax.numpy as jnp
from flax import linen as nn

table = nn.tabulate(nn.Dense(3), jax.random.key(0),
                    console_kwargs={"force_terminal": False, "width": 120})(jnp.ones((1, 4)))
assert "kernel" in table
""",
    ),
)


def resolve_all() -> list[tuple[Concept, Location, Location]]:
    """Return every concept with its torch and Flax locations."""
    return [(concept, concept.torch_location(), concept.flax_location()) for concept in CONCEPTS]


def _located_in(location: Location, step) -> bool:
    return (step is not None and step.fragment.path == location.path
            and step.fragment.contains(location.line))


def concepts_in_row(row, resolved, placed: set[str]) -> list[Concept]:
    """Return the concepts whose torch or Flax line lies in ``row`` and are not in ``placed``.

    The returned slugs are added to ``placed``, so each concept appears once per page.
    """
    found = []
    for concept, torch_location, flax_location in resolved:
        if concept.slug in placed:
            continue
        if _located_in(torch_location, row.torch) or _located_in(flax_location, row.flax):
            found.append(concept)
            placed.add(concept.slug)
    return found


def _code_span(text: str) -> str:
    """Return ``text`` as a Markdown code span, fenced with enough backticks."""
    text = text.replace("|", "\\|")  # a bare | would end the table cell
    fence = "``" if "`" in text else "`"
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _link(location: Location, docs_dir: Path) -> str:
    target = os.path.relpath(location.path, docs_dir)
    return f"[{location.relative()}]({target}#L{location.line})"


def render_markdown(docs_dir: Path | None = None) -> str:
    """Return the concept map as Markdown, with links relative to ``docs_dir``."""
    docs_dir = docs_dir or repository_root() / "docs"
    lines = [
        "# Concept map: PyTorch and JAX/Flax",
        "",
        "Each idea of the `nn.Module` tutorial in both frameworks, the difference that trips",
        "people, and the line where each twin shows it. Generated from `twins/concepts.py` by",
        "`twins show --concepts-md docs/concepts.md`; do not edit by hand. Every code block",
        "below runs in the test suite (`parity_tests/test_show_concepts.py`).",
        "",
        "| concept | PyTorch | JAX / Flax | torch twin | Flax twin |",
        "| --- | --- | --- | --- | --- |",
    ]
    resolved = resolve_all()
    for concept, torch_loc, flax_loc in resolved:
        lines.append(f"| [{concept.title}](#{concept.slug}) | {_code_span(torch_loc.code)} | "
                     f"{_code_span(flax_loc.code)} | {_link(torch_loc, docs_dir)} | "
                     f"{_link(flax_loc, docs_dir)} |")
    for concept, torch_loc, flax_loc in resolved:
        lines += [
            "",
            f'<a id="{concept.slug}"></a>',
            "",
            f"## {concept.title}",
            "",
            f"* PyTorch: {concept.torch_form}. Twin: {_link(torch_loc, docs_dir)}.",
            f"* JAX/Flax: {concept.flax_form}. Twin: {_link(flax_loc, docs_dir)}.",
            f"* What trips people: {concept.trap}",
            "",
            "```python",
            concept.torch_snippet.rstrip("\n"),
            "```",
            "",
            "```python",
            concept.flax_snippet.rstrip("\n"),
            "```",
        ]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path) -> None:
    """Write the concept map to ``path`` atomically (a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_markdown(path.parent.resolve())
    write_atomically(path, text)
