"""The concept registry, the generated docs/concepts.md and every snippet under docs/."""

import re
from pathlib import Path

import pytest

from twins.concepts import CONCEPTS, Locator, LocatorError, render_markdown
from twins.sidebyside.views import FLAX_PACKAGE, TORCH_PACKAGE, repository_root

DOCS = repository_root() / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _snippets() -> list[tuple[str, str]]:
    """Return ``(file:line id, code)`` for every Python code block in docs/."""
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(DOCS)}:{line}", match.group(1)))
    return found


SNIPPETS = _snippets()


def test_docs_have_snippets():
    assert len(SNIPPETS) >= 2 * len(CONCEPTS)


def test_concepts_md_fences_are_python():
    # Only ```python blocks are executed, so the concept map must use no other kind.
    fences = re.findall(r"^```(\w*)$", (DOCS / "concepts.md").read_text(), re.M)
    languages = set(fences[0::2])
    assert languages == {"python"}, languages


@pytest.mark.parametrize("code", [code for _, code in SNIPPETS], ids=[name for name, _ in SNIPPETS])
def test_docs_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a snippet that writes files writes them here
    exec(compile(code, "<docs snippet>", "exec"), {"__name__": "__docs_snippet__"})


def test_concepts_md_is_current():
    committed = (DOCS / "concepts.md").read_text()
    assert committed == render_markdown(DOCS), (
        "docs/concepts.md is stale (a twin source or twins/concepts.py changed); regenerate it "
        "with `twins show --concepts-md docs/concepts.md`")


def test_concepts_cover_tutorial():
    titles = " ".join(concept.title.lower() for concept in CONCEPTS)
    for idea in ("parametrised function", "registration", "nn.parameter", "unregistered",
                 "buffers", "nested", "hooks", "state_dict", "devices", "autograd", "optimizer"):
        assert idea in titles, f"no concept for {idea!r}"


@pytest.mark.parametrize("concept", CONCEPTS, ids=[concept.slug for concept in CONCEPTS])
def test_concept_locations_resolve(concept):
    torch_location = concept.torch_location()
    flax_location = concept.flax_location()
    assert torch_location.path.parent.name == TORCH_PACKAGE
    assert flax_location.path.parent.name == FLAX_PACKAGE
    assert concept.torch_at.needle in torch_location.code
    assert concept.flax_at.needle in flax_location.code
    line = Path(torch_location.path).read_text().splitlines()[torch_location.line - 1]
    assert line.strip() == torch_location.code


def test_locator_skips_docstring():
    # call_vs_forward's docstring names model(x) first; the located line is code.
    location = Locator("concepts", "call_vs_forward", "model(x)").resolve(TORCH_PACKAGE)
    assert location.code.startswith("return ")


def test_locator_reports_missing_text():
    with pytest.raises(LocatorError, match="no longer contains 'no_such_call'"):
        Locator("scale", "Scale.__init__", "no_such_call").resolve(TORCH_PACKAGE)


def test_locator_reports_missing_definition():
    with pytest.raises(LocatorError, match="no definition 'Scale.missing'"):
        Locator("scale", "Scale.missing", "x").resolve(TORCH_PACKAGE)
