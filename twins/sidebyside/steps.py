"""Split a twin source file into steps and align the torch steps with the Flax steps.

The alignment is read from the sources with ``ast``, so it follows the code as it
changes; there are no markers to keep in sync. The rules:

* The module docstring, imports and constants before the first definition form
  the ``header`` step.
* Top-level functions, classes and later assignments pair up by name, because
  twin files define the same public names in the same order.
* A class splits into its header (docstring, Flax dataclass fields, properties)
  and its methods. In an ``nn.Module``, torch's ``__init__`` (with the methods
  it calls on ``self``, such as ``reset_parameters``) pairs with Flax's
  ``setup`` as the "parameters" step, and ``forward`` with ``__call__``.
* A Flax ``@nn.compact`` method creates its parameters inline: the statements
  that call ``self.param``, ``self.variable`` or construct an ``nn`` layer
  form its "parameters" step. When they come first, the rest of the method is
  its compute step. When they are interleaved with the computation, the compute
  step shows the whole method.
* A function found on one side only may match a fragment of the other side's
  training loop with the same role: Flax's ``make_train_step`` (it calls
  ``optax.apply_updates``) matches the statements of torch's ``train`` loop
  from ``zero_grad`` to ``optimizer.step()``.
* Definitions left unmatched between two matched steps on both sides share one
  row whose names differ (torch ``reset_linear_`` beside Flax ``torch_dense``);
  anything still unmatched is a one-sided row. A one-sided public step breaks
  the mirror rule; a one-sided private helper (``_name``) does not.
"""

import ast
from dataclasses import dataclass, field
from pathlib import Path

HEADER = "header"

OPTIMIZER_STEP = "optimizer step"
GRADIENT = "gradient"
LOSS = "loss"
TRAINING_LOOP = "training loop"

# Calls that compute gradients on either side.
_GRADIENT_CALLS = {"backward", "grad", "value_and_grad", "vjp"}
# optax's ``apply_updates``; torch's ``optimizer.step()`` is matched separately.
_UPDATE_CALLS = {"apply_updates"}

# Methods of an nn.Module that name the same step on both sides.
_MODULE_METHODS = {"__init__": "parameters", "setup": "parameters",
                   "forward": "forward", "__call__": "forward"}
_PARAM_CREATORS = {"param", "variable"}
# Blank or plain lines between two parameter statements that still join them
# into one span (the ``n = s.shape[-1]`` an initializer needs).
_SPAN_JOIN_GAP = 2


@dataclass(frozen=True)
class Fragment:
    """Line spans (1-based, inclusive, ascending) of the file at ``path``."""

    path: Path
    spans: tuple[tuple[int, int], ...]
    context: str = ""  # e.g. "inside train" for a fragment of a larger function

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]

    def contains(self, line: int) -> bool:
        return any(start <= line <= end for start, end in self.spans)

    def span_texts(self) -> list[tuple[int, str]]:
        """Return ``(first line, text)`` for each span."""
        lines = self.path.read_text().splitlines()
        return [(start, "\n".join(lines[start - 1:end])) for start, end in self.spans]

    def text(self) -> str:
        return "\n".join(text for _, text in self.span_texts())

    def location(self, root: Path | None = None) -> str:
        path = self.path
        if root is not None:
            try:
                path = self.path.relative_to(root)
            except ValueError:
                pass
        parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in self.spans]
        return f"{path}:{','.join(parts)}"


def dedented_spans(step: "Step") -> list[tuple[int, str]]:
    """Return the step's spans with the indentation they all share removed."""
    spans = step.fragment.span_texts()
    indents = [len(line) - len(line.lstrip()) for _, text in spans
               for line in text.splitlines() if line.strip()]
    cut = min(indents, default=0)
    return [(start, "\n".join(line[cut:] for line in text.splitlines())) for start, text in spans]


def _fragment(path: Path, start: int, end: int, context: str = "") -> Fragment:
    return Fragment(path, ((start, end),), context)


@dataclass(frozen=True)
class Step:
    """One step of a source file: the key it aligns by, a label and its lines."""

    key: str
    label: str
    name: str  # the qualified name on this side, e.g. "MLP.__call__"
    fragment: Fragment
    role: str = ""
    top_level: bool = True

    @property
    def public(self) -> bool:
        """False for a private helper: a name part that starts with one underscore."""
        return not any(part.startswith("_") and not part.endswith("__")
                       for part in self.name.split("."))


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

    @property
    def breaks_mirror(self) -> bool:
        """True for a public step that exists on one side only."""
        step = self.torch or self.flax
        return self.one_sided and step.public

    def missing_note(self, missing_in: str) -> str:
        """Return the text shown where ``missing_in`` (a file name) has no step for this row."""
        if self.breaks_mirror:
            return f"missing in {missing_in}: a public step without a twin"
        return f"no counterpart in {missing_in} (private helper)"


@dataclass
class FileAlignment:
    """The rows of one torch file beside its Flax twin."""

    torch_path: Path
    flax_path: Path
    rows: list[Row] = field(default_factory=list)

    def mirror_breaks(self) -> list[Row]:
        return [row for row in self.rows if row.breaks_mirror]


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

    A loop whose body computes gradients or calls a step is the training loop.
    Otherwise the first match wins: an optimizer update, a gradient call, a
    name containing "loss".
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


def _decorator_names(node: ast.AST) -> set[str]:
    names = set()
    for decorator in getattr(node, "decorator_list", []):
        names.add(decorator.attr if isinstance(decorator, ast.Attribute) else getattr(decorator, "id", ""))
    return names


def _module_classes(tree: ast.Module) -> set[str]:
    """Return the classes of the file that derive from a ``Module`` (directly or through a local base)."""
    found: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name == "Module" or name in found:
                found.add(node.name)
    return found


def _creates_params(stmt: ast.stmt) -> bool:
    """True when ``stmt`` calls ``self.param``/``self.variable`` or builds an ``nn.<Layer>``."""
    for sub in ast.walk(stmt):
        if not (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)):
            continue
        owner = sub.func.value
        if not isinstance(owner, ast.Name):
            continue
        if owner.id == "self" and sub.func.attr in _PARAM_CREATORS:
            return True
        if owner.id == "nn" and sub.func.attr[:1].isupper():
            return True
    return False


def _simple_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Return the statements of ``body`` that hold no block, descending into blocks."""
    result = []
    for stmt in body:
        blocks = [getattr(stmt, name, None) for name in ("body", "orelse", "finalbody", "handlers")]
        blocks = [block for block in blocks if isinstance(block, list) and block]
        if blocks and not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            for block in blocks:
                result.extend(_simple_statements(block))
        else:
            result.append(stmt)
    return result


def _join_spans(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    joined: list[list[int]] = []
    for start, end in sorted(spans):
        if joined and start - joined[-1][1] - 1 <= _SPAN_JOIN_GAP:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    return tuple((a, b) for a, b in joined)


def _compact_steps(cls: str, method: ast.FunctionDef, key: str, label: str, path: Path,
                   lines: list[str]) -> list[Step]:
    """Split a ``@nn.compact`` method into its parameter statements and its computation."""
    start = _first_line(method, lines)
    body = [stmt for stmt in method.body if not _is_docstring(stmt)]
    qualified = f"{cls}.{method.name}"
    creating = [stmt for stmt in _simple_statements(body) if _creates_params(stmt)]
    if not creating:
        return [Step(key, label, qualified, _fragment(path, start, method.end_lineno))]

    header_end = body[0].lineno - 1
    spans = [(start, header_end)] + [(stmt.lineno, stmt.end_lineno) for stmt in creating]
    context = f"@nn.compact: created inside {method.name}"
    steps = [Step(f"{cls}.parameters", f"{cls}: parameters", qualified,
                  Fragment(path, _join_spans(spans), context))]
    top_level_creating = [i for i, stmt in enumerate(body) if _creates_params(stmt)]
    prefix = top_level_creating == list(range(len(top_level_creating)))
    if prefix and len(top_level_creating) < len(body):
        rest = _fragment(path, body[len(top_level_creating)].lineno, method.end_lineno)
    else:
        rest = _fragment(path, start, method.end_lineno, "parameters created inline")
    steps.append(Step(key, label, qualified, rest))
    return steps


def _self_calls(method: ast.FunctionDef) -> set[str]:
    """Return the names of ``self.<name>(...)`` calls in ``method``."""
    names = set()
    for sub in ast.walk(method):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
                and isinstance(sub.func.value, ast.Name) and sub.func.value.id == "self"):
            names.add(sub.func.attr)
    return names


def _class_steps(node: ast.ClassDef, is_module: bool, path: Path, lines: list[str]) -> list[Step]:
    steps = []
    methods = [stmt for stmt in node.body if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))]
    properties = [m for m in methods if "property" in _decorator_names(m)]
    methods = [m for m in methods if m not in properties]

    # The header: docstring, fields, and properties (accessors, not steps).
    first_method = min((_first_line(m, lines) for m in methods + properties), default=None)
    header_end = first_method - 1 if first_method else node.end_lineno
    while header_end > node.lineno and not lines[header_end - 1].strip():
        header_end -= 1
    spans = [(_first_line(node, lines), header_end)]
    spans += [(_first_line(p, lines), p.end_lineno) for p in properties]
    steps.append(Step(node.name, f"class {node.name}", node.name,
                      Fragment(path, _join_spans(spans))))

    # torch: methods that __init__ calls on self (reset_parameters) join the parameters step.
    init = next((m for m in methods if m.name == "__init__"), None)
    init_helpers = set()
    if is_module and init is not None:
        init_helpers = {m.name for m in methods if m.name in _self_calls(init)}

    for method in methods:
        if method.name in init_helpers:
            continue
        start = _first_line(method, lines)
        qualified = f"{node.name}.{method.name}"
        shared = _MODULE_METHODS.get(method.name) if is_module else None
        key = f"{node.name}.{shared or method.name}"
        label = f"{node.name}: {shared or method.name}"
        if is_module and "compact" in _decorator_names(method):
            steps.extend(_compact_steps(node.name, method, key, label, path, lines))
            continue
        spans = [(start, method.end_lineno)]
        if method is init:
            spans += [(_first_line(m, lines), m.end_lineno) for m in methods if m.name in init_helpers]
        steps.append(Step(key, label, qualified, Fragment(path, _join_spans(spans)),
                          function_role(method)))
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
                        _fragment(path, loop.body[start_index].lineno, stmt.end_lineno,
                                  f"inside {node.name}"),
                        OPTIMIZER_STEP, top_level=False)
    return None


def parse_steps(path: Path) -> tuple[list[Step], list[Step]]:
    """Return the top-level steps of ``path`` in source order, and its nested fragments."""
    path = Path(path).resolve()
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
    module_classes = _module_classes(tree)

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
            steps.extend(_class_steps(stmt, stmt.name in module_classes, path, lines))
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            role = function_role(stmt)
            label = f"{role}: {stmt.name}" if role else stmt.name
            steps.append(Step(stmt.name, label, stmt.name,
                              _fragment(path, _first_line(stmt, lines), stmt.end_lineno), role))
            if role == TRAINING_LOOP:
                fragment = _optimizer_step_fragment(stmt, path)
                if fragment is not None:
                    nested.append(fragment)
        else:
            name = _target_name(stmt) or ast.unparse(stmt).split("\n")[0][:40]
            steps.append(Step(name, name, name, _fragment(path, _first_line(stmt, lines), stmt.end_lineno)))
    if header_end:
        steps.insert(0, Step(HEADER, "docstring and imports", HEADER, _fragment(path, 1, header_end)))
    return steps, nested


def _target_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


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
        index = 0
        if previous_row is not None:
            # By identity: two rows may compare equal as dataclasses.
            index = next(i for i, other in enumerate(rows) if other is previous_row) + 1
        rows.insert(index, row)
        previous_row = row

    return FileAlignment(Path(torch_path).resolve(), Path(flax_path).resolve(), _merge_gaps(rows))


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
        if "compact" in flax_step.fragment.context:
            flax_method = "@nn.compact " + flax_method
        return f"{torch_step.label} ({torch_method} | {flax_method})"
    return torch_step.label


def _merge_gaps(rows: list[Row]) -> list[Row]:
    """Join public torch-only and Flax-only steps between two paired rows into one row.

    Both sides then show the code they put at that place, under both names.
    Private helpers stay one-sided rows: a helper has no duty to mirror.
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
        if row.breaks_mirror:
            run.append(row)
        else:
            flush()
            merged.append(row)
    flush()
    return merged


def _join(steps: list[Step]) -> Step:
    """Return one step holding the spans of ``steps`` (definitions of one file)."""
    if len(steps) == 1:
        return steps[0]
    spans = [span for step in steps for span in step.fragment.spans]
    return Step(" + ".join(s.key for s in steps), ", ".join(s.label for s in steps),
                ", ".join(s.name for s in steps),
                Fragment(steps[0].fragment.path, _join_spans(spans)))
