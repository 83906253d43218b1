"""Render aligned twin sources in the terminal with rich and pygments."""

from pathlib import Path

from rich.console import Console, Group
from rich.padding import Padding
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from twins.concepts import Concept, concepts_in_row, resolve_all
from twins.sidebyside.steps import FileAlignment, Row, Step, dedented_spans

# Below this many columns each side gets less than ~48 characters, which
# wraps most source lines, so steps are printed one side after the other.
TWO_COLUMN_MIN_WIDTH = 100
# Uses the terminal's own palette, so it reads on dark and light backgrounds.
THEME = "ansi_dark"


def _location(step: Step, root: Path) -> Text:
    text = Text(step.fragment.location(root), style="dim")
    if step.fragment.context:
        text.append(f"  ({step.fragment.context})", style="dim italic")
    return text


def _code(step: Step) -> Group:
    """Return the step's spans, highlighted, with a vertical ellipsis between spans."""
    parts = []
    for first_line, text in dedented_spans(step):
        if parts:
            parts.append(Text("    ⋮", style="dim"))
        parts.append(Syntax(text, "python", theme=THEME, background_color="default",
                            line_numbers=True, start_line=first_line, word_wrap=True))
    return Group(*parts)


def _side(row: Row, step: Step | None, path: Path, root: Path, tag: Text | None = None) -> Group:
    """Return one side of a row from file ``path``; ``tag`` (narrow layout) prefixes the location."""
    prefix = tag or Text()
    if step is None:
        style = "bold red" if row.breaks_mirror else "yellow"
        return Group(prefix + Text(row.missing_note(str(path.relative_to(root))), style=style))
    return Group(prefix + _location(step, root), _code(step))


def _row_title(row: Row) -> Text:
    title = Text(row.label, style="bold cyan")
    if row.names_differ:
        title.append("  (names differ)", style="yellow")
    return title


def _heading(console: Console, title: Text, style: str, align: str = "center") -> None:
    """Print ``title`` in a rule, or above one when the rule would crop it."""
    if title.cell_len + 6 <= console.width:
        console.print(Rule(title, align=align, style=style))
    else:
        console.print(title)
        console.print(Rule(style=style))


def _concept_note(concept: Concept) -> Padding:
    note = Text("concept: ", style="yellow")
    note.append(concept.title, style="bold yellow")
    note.append(f". What trips people: {concept.trap.replace('`', '')}", style="yellow")
    return Padding(note, (0, 0, 0, 2))


def render_alignment(alignment: FileAlignment, console: Console, root: Path,
                     resolved=(), placed: set[str] | None = None) -> None:
    """Print one file pair: two columns per step, or torch then Flax on a narrow console.

    ``resolved`` (from ``twins.concepts.resolve_all``) adds a note after the
    first row that shows each concept; ``placed`` collects the notes printed.
    """
    placed = set() if placed is None else placed
    torch_name = alignment.torch_path.relative_to(root)
    flax_name = alignment.flax_path.relative_to(root)
    _heading(console, Text(f"{torch_name}  |  {flax_name}", style="bold"), "bold")
    two_columns = console.width >= TWO_COLUMN_MIN_WIDTH
    for row in alignment.rows:
        _heading(console, _row_title(row), "grey50", align="left")
        if two_columns:
            torch_side = _side(row, row.torch, alignment.torch_path, root)
            flax_side = _side(row, row.flax, alignment.flax_path, root)
            grid = Table.grid(expand=True, padding=(0, 2))
            grid.add_column(ratio=1, overflow="fold")
            grid.add_column(ratio=1, overflow="fold")
            grid.add_row(torch_side, flax_side)
            console.print(grid)
        else:
            console.print(_side(row, row.torch, alignment.torch_path, root,
                                Text("torch ", style="bold magenta")))
            console.print(_side(row, row.flax, alignment.flax_path, root,
                                Text("flax  ", style="bold green")))
        for concept in concepts_in_row(row, resolved, placed):
            console.print(_concept_note(concept))
    console.print()


def render(alignments: list[FileAlignment], console: Console, root: Path) -> None:
    """Print every file pair of a view, with a note where a step shows a tutorial concept."""
    resolved = resolve_all()
    placed: set[str] = set()
    for alignment in alignments:
        render_alignment(alignment, console, root, resolved, placed)
