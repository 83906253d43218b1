"""``twins show --html DIR``: a static site of the aligned twins, concepts and parity figures.

Every page is self-contained: the pygments stylesheet and the page's CSS are
inlined and nothing is loaded from the network, so the site works offline and
from ``file://``.
"""

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from twins.atomic import write_atomically
from twins.concepts import Concept, Location, concepts_in_row, resolve_all
from twins.registry import EXAMPLES
from twins.sidebyside.steps import FileAlignment, Row, SourceError, Step, dedented_spans
from twins.sidebyside.views import View, repository_root, views

PARITY_FIELDS = ("example", "check", "dtype", "device", "max_abs", "max_rel", "tolerance", "passed")
PYGMENTS_STYLE = "default"
# Not "concepts.html": that name belongs to the page of the concepts.py twins.
CONCEPT_MAP_PAGE = "concept-map.html"
# The view whose page shows the NQS rows of ``twins parity``.
NQS_VIEW = "rbm"

PAGE_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 1em 2em;
       color: #1b1b1b; background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; }
a { color: #0645ad; }
table.twins { width: 100%; border-collapse: collapse; table-layout: fixed; }
table.twins th.side { text-align: left; background: #f0f0f0; padding: 0.4em; }
tr.step th { text-align: left; padding: 0.8em 0.4em 0.2em; font-weight: 600; color: #005a9c;
             border-top: 1px solid #ccc; }
tr.step th .differ { color: #a15c00; font-weight: normal; }
td.code { vertical-align: top; padding: 0 0.4em; width: 50%; }
td.code .loc { font-size: 0.8em; color: #666; font-family: monospace; }
td.missing { color: #b00020; font-style: italic; }
td.helper { color: #777; font-style: italic; }
.highlight pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0.2em 0; font-size: 0.85em;
                 line-height: 1.35; }
.highlight .linenos, .highlight span.linenos { color: #999; }
.ellipsis { color: #999; font-family: monospace; padding-left: 2em; }
tr.concept td { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em;
                font-size: 0.9em; }
table.figures { border-collapse: collapse; font-size: 0.9em; }
table.figures th, table.figures td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
table.figures td.num { text-align: right; font-family: monospace; }
.pass { color: #0a7a28; } .fail { color: #b00020; font-weight: bold; }
.note { color: #555; }
table.index { border-collapse: collapse; }
table.index td, table.index th { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left;
                                 vertical-align: top; }
code { font-size: 0.9em; }
/* A narrow window stacks each step: torch first, then Flax, like the terminal. */
@media (max-width: 900px) {
  table.twins, table.twins tbody, table.twins tr { display: block; width: 100%; }
  table.twins td.code, table.twins tr.step th { display: block; width: auto; }
  table.twins th.side { display: none; }
}
"""


class ParityFileError(ValueError):
    """A parity JSON file that is missing or not in ``twins parity --json`` format."""


class IncompleteSiteError(RuntimeError):
    """The site was written, but some pages could not show their sources."""

    def __init__(self, index: Path, failures: list[str]):
        super().__init__(f"wrote {index}, but {len(failures)} page(s) show an error instead of "
                         f"their sources: " + "; ".join(failures))
        self.index = index
        self.failures = failures


@dataclass
class ParityFigures:
    """Parity rows by example, and where they came from."""

    rows: list[dict]
    source: str  # a sentence naming the file or the run

    def for_examples(self, names: tuple[str, ...]) -> list[dict]:
        return [row for row in self.rows if row["example"] in names]


def load_parity_json(path: Path) -> ParityFigures:
    """Read a ``twins parity --json`` file, checking each row's fields."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError:
        raise ParityFileError(f"parity file {path} not found; write one with "
                              f"`twins parity --json {path}`") from None
    except json.JSONDecodeError as error:
        raise ParityFileError(f"parity file {path} is not valid JSON ({error}); write it with "
                              f"`twins parity --json {path}`") from None
    if not isinstance(rows, list):
        raise ParityFileError(f"parity file {path} contains a {type(rows).__name__}, expected the "
                              f"list of rows that `twins parity --json` writes")
    for index, row in enumerate(rows):
        missing = [name for name in PARITY_FIELDS if not isinstance(row, dict) or name not in row]
        if missing:
            raise ParityFileError(f"parity file {path}: row {index} lacks {missing}; expected the "
                                  f"fields {list(PARITY_FIELDS)} that `twins parity --json` writes")
    modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    return ParityFigures(rows, f"from {path.name}, written {modified:%Y-%m-%d %H:%M} UTC")


def nqs_case_names() -> tuple[str, ...]:
    """Return the ``twins parity`` NQS cases (RBM real and complex, FFN) that the rbm page shows."""
    from twins.nqs_parity import CASES

    return tuple(CASES)


def parity_names(view: View) -> tuple[str, ...]:
    """Return the ``example`` values of the parity rows that belong on ``view``'s page."""
    if view.name in EXAMPLES:
        return (view.name,)
    if view.name == NQS_VIEW:
        return nqs_case_names()
    return ()


def run_parity_checks(out_dir: Path) -> ParityFigures:
    """Run ``twins parity``'s checks (examples on every device pair here, NQS on the CPU); keep the JSON."""
    from twins.commands.parity import write_json
    from twins.devices import available_device_labels
    from twins.nqs_parity import run_nqs_matrix
    from twins.parity import run_matrix

    rows = run_matrix(list(EXAMPLES), devices=tuple(available_device_labels()))
    rows += run_nqs_matrix()
    path = out_dir / "parity.json"
    write_json(str(path), rows)
    now = datetime.now(timezone.utc)
    return ParityFigures([row.as_dict() for row in rows],
                         f"computed while building this site ({now:%Y-%m-%d %H:%M} UTC); "
                         f"the rows are in parity.json")


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _inline_code(text: str) -> str:
    """Return ``text`` with Markdown-style `code` spans as HTML <code>."""
    parts = _escape(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def _highlight_spans(step: Step) -> str:
    blocks = []
    for first_line, text in dedented_spans(step):
        if blocks:
            blocks.append('<div class="ellipsis">⋮</div>')
        formatter = HtmlFormatter(style=PYGMENTS_STYLE, linenos="inline", linenostart=first_line,
                                  cssclass="highlight")
        blocks.append(highlight(text, PythonLexer(), formatter))
    return "".join(blocks)


def _code_cell(row: Row, step: Step | None, path: Path, root: Path) -> str:
    if step is None:
        css = "missing" if row.breaks_mirror else "helper"
        return f'<td class="code {css}">{_escape(row.missing_note(str(path.relative_to(root))))}</td>'
    location = step.fragment.location(root)
    if step.fragment.context:
        location += f"  ({step.fragment.context})"
    return f'<td class="code"><div class="loc">{_escape(location)}</div>{_highlight_spans(step)}</td>'


def _concept_note(concept: Concept) -> str:
    return (f'<tr class="concept"><td colspan="2"><strong>{_escape(concept.title)}.</strong> '
            f'PyTorch: {_inline_code(concept.torch_form)}. JAX/Flax: {_inline_code(concept.flax_form)}. '
            f'<em>What trips people:</em> {_inline_code(concept.trap)} '
            f'<a href="concept-map.html#{concept.slug}">more</a></td></tr>')


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _alignment_table(alignment: FileAlignment, root: Path, resolved, placed: set[str]) -> str:
    torch_name = _escape(str(alignment.torch_path.relative_to(root)))
    flax_name = _escape(str(alignment.flax_path.relative_to(root)))
    out = [f'<h2 id="{_slug(alignment.torch_path.stem)}">{torch_name} | {flax_name}</h2>',
           '<table class="twins">',
           f'<tr><th class="side">PyTorch: {torch_name}</th><th class="side">JAX/Flax: {flax_name}</th></tr>']
    for row in alignment.rows:
        out.append(_step_rows(row, alignment, root))
        out += [_concept_note(concept) for concept in concepts_in_row(row, resolved, placed)]
    out.append("</table>")
    return "\n".join(out)


def _row_anchor(alignment: FileAlignment, row: Row) -> str:
    return _slug(f"{alignment.torch_path.stem}-{row.label}")


def _step_rows(row: Row, alignment: FileAlignment, root: Path) -> str:
    anchor = _row_anchor(alignment, row)
    differ = ' <span class="differ">(names differ)</span>' if row.names_differ else ""
    return (f'<tr class="step" id="{anchor}"><th colspan="2">{_escape(row.label)}{differ}</th></tr>\n'
            f'<tr>{_code_cell(row, row.torch, alignment.torch_path, root)}'
            f'{_code_cell(row, row.flax, alignment.flax_path, root)}</tr>')


def _figures_section(view: View, figures: ParityFigures | None) -> str:
    out = ['<h2 id="parity">Parity figures</h2>']
    names = parity_names(view)
    if not names:
        out.append(f'<p class="note">No parity checks are registered for {_escape(view.name)} in '
                   f'<code>twins parity</code>.</p>')
        return "\n".join(out)
    if figures is None:
        out.append('<p class="note">Parity figures missing: this site was built without them. '
                   'Rebuild with <code>twins show --html DIR</code> (runs the checks) or '
                   '<code>twins show --html DIR --parity-json PATH</code> with the file from '
                   '<code>twins parity --json PATH</code>.</p>')
        return "\n".join(out)
    rows = figures.for_examples(names)
    if not rows:
        options = " ".join(f"--example {_escape(name)}" for name in names)
        out.append(f'<p class="note">The parity figures ({_escape(figures.source)}) have no rows for '
                   f'{_escape(", ".join(names))}; run <code>twins parity {options} '
                   f'--json PATH</code>.</p>')
        return "\n".join(out)
    several = len(names) > 1
    out.append(f'<p class="note">Largest error over the compared leaves, per check; '
               f'{_escape(figures.source)}.</p>')
    out.append('<table class="figures"><tr>' + ("<th>case</th>" if several else "")
               + '<th>check</th><th>dtype</th><th>device</th>'
               '<th>max abs error</th><th>max rel error</th><th>tolerance</th><th>status</th></tr>')
    for row in rows:
        status = ('<span class="pass">pass</span>' if row["passed"]
                  else f'<span class="fail">FAIL</span> ({_escape(str(row.get("worst", "")))})')
        case = f'<td>{_escape(row["example"])}</td>' if several else ""
        out.append(f'<tr>{case}<td>{_escape(row["check"])}</td><td>{_escape(row["dtype"])}</td>'
                   f'<td>{_escape(row["device"])}</td><td class="num">{row["max_abs"]:.2e}</td>'
                   f'<td class="num">{row["max_rel"]:.2e}</td><td class="num">{row["tolerance"]:.0e}</td>'
                   f'<td>{status}</td></tr>')
    out.append("</table>")
    return "\n".join(out)


def _page(title: str, body: str) -> str:
    pygments_css = HtmlFormatter(style=PYGMENTS_STYLE).get_style_defs(".highlight")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{_escape(title)}</title>\n<style>\n{PAGE_CSS}\n{pygments_css}\n</style>\n'
            f'</head>\n<body>\n<p><a href="index.html">nqs-twins</a></p>\n{body}\n</body>\n</html>\n')


def render_view_page(view: View, figures: ParityFigures | None, resolved) -> str:
    """Return the HTML page of one view: parity figures, then each file pair aligned."""
    root = repository_root()
    placed: set[str] = set()
    body = [f"<h1>{_escape(view.name)}: {_escape(view.summary)}</h1>",
            '<p class="note">The PyTorch source on the left (above, in a narrow window) and its '
            'JAX/Flax twin on the right, step by step, read from the current sources. Notes '
            'between the steps point out the concept a step shows.</p>',
            _figures_section(view, figures)]
    body += [_alignment_table(alignment, root, resolved, placed) for alignment in view.align()]
    return _page(f"{view.name}: PyTorch and JAX/Flax side by side", "\n".join(body))


# (page file name, alignment shown on it), in page order.
PageAlignments = list[tuple[str, FileAlignment]]


def _location_link(location: Location, pages: PageAlignments) -> str:
    """Return a link to the first step, on any page, whose lines contain ``location``."""
    text = _escape(location.relative())
    for page, alignment in pages:
        for row in alignment.rows:
            for step in (row.torch, row.flax):
                if step is not None and step.fragment.path == location.path \
                        and step.fragment.contains(location.line):
                    return f'<a href="{page}#{_row_anchor(alignment, row)}">{text}</a>'
    return text


def render_concepts_page(resolved, pages: PageAlignments) -> str:
    """Return the concept map page: forms, the trap, locations and both snippets."""
    formatter = HtmlFormatter(style=PYGMENTS_STYLE, cssclass="highlight")
    body = ["<h1>Concept map: PyTorch and JAX/Flax</h1>",
            '<p class="note">The same content as <code>docs/concepts.md</code>; each snippet runs in '
            'the test suite.</p>']
    for concept, torch_location, flax_location in resolved:
        body += [
            f'<h2 id="{concept.slug}">{_escape(concept.title)}</h2>',
            f"<p>PyTorch: {_inline_code(concept.torch_form)} "
            f"({_location_link(torch_location, pages)}: <code>{_escape(torch_location.code)}</code>)</p>",
            f"<p>JAX/Flax: {_inline_code(concept.flax_form)} "
            f"({_location_link(flax_location, pages)}: <code>{_escape(flax_location.code)}</code>)</p>",
            f"<p><em>What trips people:</em> {_inline_code(concept.trap)}</p>",
            '<table class="twins"><tr>'
            f'<td class="code">{highlight(concept.torch_snippet, PythonLexer(), formatter)}</td>'
            f'<td class="code">{highlight(concept.flax_snippet, PythonLexer(), formatter)}</td></tr></table>',
        ]
    return _page("Concept map: PyTorch and JAX/Flax", "\n".join(body))


def render_index(all_views: list[View], resolved, pages: PageAlignments) -> str:
    """Return the index: every view, then every concept with its two forms."""
    body = ["<h1>nqs-twins: PyTorch and JAX/Flax side by side</h1>",
            "<h2>Examples and twin files</h2>", '<table class="index">',
            "<tr><th>page</th><th>shows</th><th>files (torch_impl/ and flax_impl/)</th></tr>"]
    for view in all_views:
        files = ", ".join(f"{m}.py" for m in view.modules)
        body.append(f'<tr><td><a href="{view.name}.html">{_escape(view.name)}</a></td>'
                    f"<td>{_escape(view.summary)}</td><td>{_escape(files)}</td></tr>")
    body += ["</table>", '<h2>Concepts</h2><table class="index">',
             "<tr><th>concept</th><th>PyTorch</th><th>JAX/Flax</th><th>torch twin</th><th>Flax twin</th></tr>"]
    for concept, torch_location, flax_location in resolved:
        body.append(f'<tr><td><a href="concept-map.html#{concept.slug}">{_escape(concept.title)}</a></td>'
                    f"<td>{_inline_code(concept.torch_form)}</td><td>{_inline_code(concept.flax_form)}</td>"
                    f"<td>{_location_link(torch_location, pages)}</td>"
                    f"<td>{_location_link(flax_location, pages)}</td></tr>")
    body.append("</table>")
    return _page("nqs-twins: PyTorch and JAX/Flax side by side", "\n".join(body))


def _write_atomic(path: Path, text: str) -> None:
    write_atomically(path, text)


def build_site(out_dir: Path, parity_json: str | None = None, run_parity: bool = True,
               log: Callable[[str], None] = print) -> Path:
    """Write index.html, the concept map and one page per view to ``out_dir``; return the index.

    Parity figures come from ``parity_json`` when given, else from running the
    checks now when ``run_parity``. Without either, the pages state that they
    are missing. Raises ``IncompleteSiteError`` after writing every page when
    a view's sources are missing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if parity_json:
        figures = load_parity_json(Path(parity_json))
    elif run_parity:
        log("running the parity checks for the example pages (skip with --no-parity)")
        figures = run_parity_checks(out_dir)
    else:
        figures = None

    all_views = list(views().values())
    resolved = resolve_all()
    pages: PageAlignments = []
    failures: list[str] = []
    for view in all_views:
        try:
            alignments = view.align()
        except SourceError as error:
            failures.append(f"{view.name}: {error}")
            continue
        pages += [(f"{view.name}.html", alignment) for alignment in alignments]

    for view in all_views:
        try:
            page = render_view_page(view, figures, resolved)
        except SourceError as error:
            page = _page(view.name, f"<h1>{_escape(view.name)}</h1>"
                                    f'<p class="fail">Cannot show this page: {_escape(str(error))}</p>')
        _write_atomic(out_dir / f"{view.name}.html", page)
    _write_atomic(out_dir / CONCEPT_MAP_PAGE, render_concepts_page(resolved, pages))
    index = out_dir / "index.html"
    _write_atomic(index, render_index(all_views, resolved, pages))
    if failures:
        raise IncompleteSiteError(index, failures)
    return index
