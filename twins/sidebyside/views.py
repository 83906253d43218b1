"""Views for ``twins show NAME``: the twin files of each example, aligned.

Every registered example shows its model file and the shared training code.
``rbm`` shows the NQS ansatz, sampler and VMC files, and a few twin files can
be read on their own.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from twins.registry import EXAMPLES
from twins.sidebyside.steps import FileAlignment, SourceError, align_files

TORCH_PACKAGE = "torch_impl"
FLAX_PACKAGE = "flax_impl"

# The NQS twins: log psi, Metropolis sampling, then VMC training on top of both.
NQS_MODULES = ("ansatz", "sampler", "vmc")
# Twin files that are not an example but read well on their own.
STANDALONE_MODULES = ("training", "initializers", "concepts")


@dataclass(frozen=True)
class View:
    """A named list of twin modules (file stems in torch_impl/ and flax_impl/)."""

    name: str
    summary: str
    modules: tuple[str, ...]

    def align(self) -> list[FileAlignment]:
        """Return one alignment per twin file pair, in the view's order."""
        return [align_files(module_path(TORCH_PACKAGE, m), module_path(FLAX_PACKAGE, m))
                for m in self.modules]


def module_path(package: str, module: str) -> Path:
    """Return the source file of ``package.module`` without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"package {package!r} is not importable; install the project "
                          f"(pip install -e .) from the repository root")
    return Path(next(iter(spec.submodule_search_locations))) / f"{module}.py"


def repository_root() -> Path:
    """Return the directory that contains torch_impl/ and flax_impl/."""
    return module_path(TORCH_PACKAGE, "x").parent.parent


def _example_module(pair) -> str:
    return pair.torch_cls.__module__.rpartition(".")[2]


def views() -> dict[str, View]:
    """Return every view by name: the examples first, then rbm, then single files."""
    result = {}
    for pair in EXAMPLES.values():
        result[pair.name] = View(pair.name, pair.concept, (_example_module(pair), "training"))
    result["rbm"] = View("rbm", "a restricted Boltzmann machine trained by variational Monte Carlo",
                         NQS_MODULES)
    for module in STANDALONE_MODULES:
        if module not in result:
            result[module] = View(module, f"the twin files {module}.py on their own", (module,))
    return result


class UnknownViewError(KeyError):
    """Raised for a ``twins show`` name that is neither an example nor a view."""

    def __str__(self):
        return self.args[0]


def get_view(name: str) -> View:
    """Return the view called ``name`` or raise ``UnknownViewError`` listing the names."""
    available = views()
    if name not in available:
        raise UnknownViewError(f"unknown name {name!r}; choose one of: {', '.join(available)}")
    return available[name]
