"""Split a twin source file into steps and align the torch steps with the Flax steps.

The alignment is read from the sources with ``ast``, so it follows the code as it
changes; there are no markers to keep in sync. The rules:

* The module docstring, imports and constants before the first definition form
  the ``header`` step.
* Top-level functions, classes and later assignments pair up by name, because
  twin files define the same public names in the same order.
* A class splits into its header (docstring, Flax dataclass fields) and its
  methods. In an ``nn.Module`` torch's ``__init__`` pairs with Flax's ``setup``
  (the "parameters" step) and ``forward`` with ``__call__``. A
  ``@nn.compact`` ``__call__`` creates its parameters inline, so it splits in
  two at the last statement that calls ``self.param`` or ``self.variable``.
* A function found on one side only may match a fragment of the other side's
  training loop with the same role: Flax's ``make_train_step`` (it calls
  ``optax.apply_updates``) matches the statements of torch's ``train`` loop
  from ``zero_grad`` to ``optimizer.step()``.
* Definitions left unmatched between two matched steps on both sides share one
  row whose names differ (for example torch ``reset_linear_`` beside Flax
  ``torch_dense``); anything still unmatched is a one-sided row.
"""

import ast
from dataclasses import dataclass, field
from pathlib import Path

HEADER = "header"

OPTIMIZER_STEP = "optimizer step"
GRADIENT = "gradient"
LOSS = "loss"
TRAINING_LOOP = "training loop"

# Calls that compute gradients on each side.
_GRADIENT_CALLS = {"backward", "grad", "value_and_grad", "vjp"}
# Calls that apply an optimizer update: torch ``optimizer.step()``, optax
# ``optax.apply_updates`` and ``optimizer.update(grads, state, params)``.
_UPDATE_CALLS = {"apply_updates"}

# torch method name -> Flax method name -> shared step name, for nn.Module classes.
_MODULE_METHODS = {"__init__": "parameters", "setup": "parameters",
                   "forward": "forward", "__call__": "forward"}
_PARAM_CREATORS = {"param", "variable"}


@dataclass(frozen=True)
class Fragment:
    """Lines ``start``..``end`` (1-based, inclusive) of the file at ``path``."""

    path: Path
    start: int
    end: int
    context: str = ""  # e.g. "inside train" for a fragment of a larger function

    def text(self) -> str:
        lines = self.path.read_text().splitlines()
        return "\n".join(lines[self.start - 1:self.end])

    def location(self, root: Path | None = None) -> str:
        path = self.path
        if root is not None:
            try:
                path = self.path.relative_to(root)
            except ValueError:
                pass
        span = f"{self.start}" if self.start == self.end else f"{self.start}-{self.end}"
        return f"{path}:{span}"


@dataclass(frozen=True)
class Step:
    """One step of a source file: the key it aligns by, a label and its lines."""

    key: str
    label: str
    name: str  # the qualified name on this side, e.g. "MLP.__call__"
    fragment: Fragment
    role: str = ""
    top_level: bool = True


@dataclass
class Row:
    """A torch step and its Flax counterpart; either side is None when one is missing."""

    label: str
    torch: Step | None
    flax: Step | None
    names_differ: bool = False

    @property
    def one_sided(self) -> bool:
        return self.torch is None or self.flax is None


@dataclass
class FileAlignment:
    """The rows of one torch file beside its Flax twin."""

    torch_path: Path
    flax_path: Path
    rows: list[Row] = field(default_factory=list)

    def one_sided_rows(self) -> list[Row]:
        return [row for row in self.rows if row.one_sided]


class SourceError(ValueError):
    """A twin source file that is missing or cannot be parsed."""


def _call_names(node: ast.AST) -> set[str]:
    """Return the final name of every call in ``node`` (``optimizer.step()`` -> ``step``)."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Attribute):
                names.add(func.attr)
            elif isinstance(func, ast.Name):
                names.add(func.id)
    return names


def _is_torch_optimizer_step(call: ast.Call) -> bool:
    """True for ``<name>.step()`` with no arguments, torch's optimizer update."""
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "step" and not call.args
            and not call.keywords)


def _has_optimizer_update(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            if _is_torch_optimizer_step(sub):
                return True
            if isinstance(sub.func, ast.Attribute) and sub.func.attr in _UPDATE_CALLS:
                return True
    return False


def _loops(node: ast.AST) -> list[ast.For | ast.While]:
    return [sub for sub in ast.walk(node) if isinstance(sub, (ast.For, ast.While))]


def function_role(node: ast.FunctionDef) -> str:
    """Return the training role of a function, or "" when it has none.

    A loop whose body computes gradients or calls a step is the training loop;
    otherwise an optimizer update, then a gradient call, then a name containing
    "loss" decide.
    """
    for loop in _loops(node):
        body_calls = set().union(*(_call_names(stmt) for stmt in loop.body))
        if body_calls & _GRADIENT_CALLS or any("step" in name for name in body_calls):
            return TRAINING_LOOP
    if _has_optimizer_update(node):
        return OPTIMIZER_STEP
    if _call_names(node) & _GRADIENT_CALLS:
        return GRADIENT
    if "loss" in node.name.lower():
        return LOSS
    return ""


def _first_line(node: ast.AST, lines: list[str]) -> int:
    """Return the first line of ``node``, counting decorators and the comment block above it."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    while start > 1 and lines[start - 2].lstrip().startswith("#"):
        start -= 1
    return start


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _is_module_class(node: ast.ClassDef) -> bool:
    """True when a base class is spelled ``...Module`` (``nn.Module``, ``linen.Module``)."""
    for base in node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        if name == "Module":
            return True
    return False


def _is_compact(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        name = decorator.attr if isinstance(decorator, ast.Attribute) else getattr(decorator, "id", "")
        if name == "compact":
            return True
    return False


def _creates_params(stmt: ast.stmt) -> bool:
    """True when ``stmt`` calls ``self.param(...)`` or ``self.variable(...)``."""
    for sub in ast.walk(stmt):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
                and sub.func.attr in _PARAM_CREATORS and isinstance(sub.func.value, ast.Name)
                and sub.func.value.id == "self"):
            return True
    return False


def _target_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _class_steps(node: ast.ClassDef, path: Path, lines: list[str]) -> list[Step]:
    steps = []
    is_module = _is_module_class(node)
    methods = [stmt for stmt in node.body if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))]
    header_end = (_first_line(methods[0], lines) - 1) if methods else node.end_lineno
    while header_end > node.lineno and not lines[header_end - 1].strip():
        header_end -= 1
    steps.append(Step(node.name, f"class {node.name}", node.name,
                      Fragment(path, _first_line(node, lines), header_end)))

    for method in methods:
        start = _first_line(method, lines)
        qualified = f"{node.name}.{method.name}"
        shared = _MODULE_METHODS.get(method.name) if is_module else None
        if shared is None:
            steps.append(Step(qualified, f"{node.name}.{method.name}", qualified,
                              Fragment(path, start, method.end_lineno), function_role(method)))
            continue
        key = f"{node.name}.{shared}"
        body = [stmt for stmt in method.body if not _is_docstring(stmt)]
        creating = [i for i, stmt in enumerate(body) if _creates_params(stmt)]
        if shared == "forward" and _is_compact(method) and creating and creating[-1] + 1 < len(body):
            # @nn.compact: parameters are created inside __call__, so its lines
            # up to the last self.param/self.variable call pair with torch's
            # __init__ and the rest with torch's forward.
            split = body[creating[-1]].end_lineno
            steps.append(Step(f"{node.name}.parameters", f"{node.name}: parameters", qualified,
                              Fragment(path, start, split, "@nn.compact: created inside __call__")))
            steps.append(Step(key, f"{node.name}: forward", qualified,
                              Fragment(path, body[creating[-1] + 1].lineno, method.end_lineno)))
            continue
        steps.append(Step(key, f"{node.name}: {shared}", qualified,
                          Fragment(path, start, method.end_lineno)))
    return steps


def _optimizer_step_fragment(node: ast.FunctionDef, path: Path) -> Step | None:
    """Return the statements of a training loop from ``zero_grad`` to ``optimizer.step()``."""
    for loop in _loops(node):
        for end_index, stmt in enumerate(loop.body):
            calls = [sub for sub in ast.walk(stmt) if isinstance(sub, ast.Call)]
            if not any(_is_torch_optimizer_step(call) for call in calls):
                continue
            start_index = 0
            for index in range(end_index + 1):
                if "zero_grad" in _call_names(loop.body[index]):
                    start_index = index
                    break
            return Step(f"{node.name}:{OPTIMIZER_STEP}", OPTIMIZER_STEP, node.name,
                        Fragment(path, loop.body[start_index].lineno, stmt.end_lineno,
                                 f"inside {node.name}"),
                        OPTIMIZER_STEP, top_level=False)
    return None


def parse_steps(path: Path) -> tuple[list[Step], list[Step]]:
    """Return the top-level steps of ``path`` in source order, and its nested fragments."""
    path = Path(path)
    try:
        source = path.read_text()
    except FileNotFoundError:
        raise SourceError(f"twin source {path} not found; both torch_impl/ and flax_impl/ "
                          f"must contain a file of this name") from None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise SourceError(f"cannot parse {path}: {error}") from None
    lines = source.splitlines()

    definitions = [stmt for stmt in tree.body
                   if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    first_definition = _first_line(definitions[0], lines) if definitions else len(lines) + 1
    steps, nested = [], []
    header_end = 0
    for stmt in tree.body:
        if stmt.lineno < first_definition:
            header_end = stmt.end_lineno
            continue
        if isinstance(stmt, ast.ClassDef):
            steps.extend(_class_steps(stmt, path, lines))
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            role = function_role(stmt)
            label = f"{role}: {stmt.name}" if role else stmt.name
            steps.append(Step(stmt.name, label, stmt.name,
                              Fragment(path, _first_line(stmt, lines), stmt.end_lineno), role))
            if role == TRAINING_LOOP:
                fragment = _optimizer_step_fragment(stmt, path)
                if fragment is not None:
                    nested.append(fragment)
        else:
            name = _target_name(stmt) or ast.unparse(stmt).split("\n")[0][:40]
            steps.append(Step(name, name, name, Fragment(path, _first_line(stmt, lines), stmt.end_lineno)))
    if header_end:
        steps.insert(0, Step(HEADER, "docstring and imports", HEADER, Fragment(path, 1, header_end)))
    return steps, nested


def align_files(torch_path: Path, flax_path: Path) -> FileAlignment:
    """Return the rows pairing each step of ``torch_path`` with one of ``flax_path``."""
    torch_steps, torch_nested = parse_steps(torch_path)
    flax_steps, flax_nested = parse_steps(flax_path)
    flax_by_key = {step.key: step for step in flax_steps}
    torch_keys = {step.key for step in torch_steps}

    # A function on one side only may match a nested fragment of the other
    # side's training loop that has the same role.
    nested_partner: dict[int, Step] = {}  # id(top-level step) -> nested fragment
    for fragments, steps, other_keys in ((torch_nested, flax_steps, torch_keys),
                                         (flax_nested, torch_steps, set(flax_by_key))):
        for fragment in fragments:
            for step in steps:
                if step.key not in other_keys and step.role == fragment.role \
                        and id(step) not in nested_partner:
                    nested_partner[id(step)] = fragment
                    break

    rows: list[Row] = []
    flax_rows: dict[int, Row] = {}
    for step in torch_steps:
        if step.key in flax_by_key:
            row = Row(_row_label(step, flax_by_key[step.key]), step, flax_by_key[step.key])
            flax_rows[id(flax_by_key[step.key])] = row
        elif id(step) in nested_partner:
            row = Row(step.role, step, nested_partner[id(step)])
        else:
            row = Row(step.label, step, None)
        rows.append(row)

    # Place each remaining Flax step after the row of the Flax step before it.
    previous_row: Row | None = None
    for step in flax_steps:
        if id(step) in flax_rows:
            previous_row = flax_rows[id(step)]
            continue
        if id(step) in nested_partner:
            row = Row(step.role, nested_partner[id(step)], step)
        else:
            row = Row(step.label, None, step)
        index = rows.index(previous_row) + 1 if previous_row is not None else 0
        rows.insert(index, row)
        previous_row = row

    return FileAlignment(Path(torch_path), Path(flax_path), _merge_gaps(rows))


def _row_label(torch_step: Step, flax_step: Step) -> str:
    """Return the row label; it names both methods where they differ (``__init__ | setup``)."""
    role = torch_step.role if torch_step.role == flax_step.role else ""
    if torch_step.key == HEADER:
        return torch_step.label
    if role:
        return f"{role}: {torch_step.key}"
    torch_method = torch_step.name.rpartition(".")[2]
    flax_method = flax_step.name.rpartition(".")[2]
    if torch_method != flax_method:
        if flax_step.fragment.context.startswith("@nn.compact"):
            flax_method = "@nn.compact " + flax_method
        return f"{torch_step.label} ({torch_method} | {flax_method})"
    return torch_step.label


def _merge_gaps(rows: list[Row]) -> list[Row]:
    """Join a run of torch-only and Flax-only rows between two paired rows into one row.

    Both sides then show the code they put at that place, under both names. Each
    side may hold several steps; their fragments are joined when adjacent.
    """
    merged: list[Row] = []
    run: list[Row] = []

    def flush():
        torch_side = [row.torch for row in run if row.flax is None]
        flax_side = [row.flax for row in run if row.torch is None]
        if torch_side and flax_side:
            merged.append(Row(
                " / ".join([", ".join(s.name for s in torch_side), ", ".join(s.name for s in flax_side)]),
                _join(torch_side), _join(flax_side), names_differ=True))
        else:
            merged.extend(run)
        run.clear()

    for row in rows:
        if row.one_sided:
            run.append(row)
        else:
            flush()
            merged.append(row)
    flush()
    return merged


def _join(steps: list[Step]) -> Step:
    """Return one step spanning ``steps`` (consecutive definitions of one file)."""
    if len(steps) == 1:
        return steps[0]
    first, last = steps[0], steps[-1]
    return Step(" + ".join(s.key for s in steps), ", ".join(s.label for s in steps),
                ", ".join(s.name for s in steps),
                Fragment(first.fragment.path, first.fragment.start, last.fragment.end))
