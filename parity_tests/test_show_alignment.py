"""Step alignment of the twin sources, as ``twins show`` renders it."""

import textwrap
from pathlib import Path

import pytest

from twins.registry import EXAMPLES
from twins.sidebyside.steps import (GRADIENT, LOSS, OPTIMIZER_STEP, TRAINING_LOOP, align_files,
                                    parse_steps)
from twins.sidebyside.views import get_view, views


def _describe(row) -> str:
    step = row.torch or row.flax
    side = "torch" if row.torch else "flax"
    return f"{row.label} ({side} only, {step.fragment.location()})"


@pytest.mark.parametrize("name", list(views()))
def test_view_steps_exist_on_both_sides(name):
    for alignment in get_view(name).align():
        breaks = [_describe(row) for row in alignment.mirror_breaks()]
        assert not breaks, f"{alignment.torch_path.name}: public steps without a twin: {breaks}"


@pytest.mark.parametrize("name", list(views()))
def test_view_rows_cover_every_line(name):
    for alignment in get_view(name).align():
        for side, path in (("torch", alignment.torch_path), ("flax", alignment.flax_path)):
            covered = set()
            for row in alignment.rows:
                step = row.torch if side == "torch" else row.flax
                if step is not None and step.top_level:
                    for start, end in step.fragment.spans:
                        covered.update(range(start, end + 1))
            lines = path.read_text().splitlines()
            left_out = [number for number, line in enumerate(lines, 1)
                        if line.strip() and number not in covered]
            assert not left_out, f"{path.name}: lines {left_out} are in no step"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_has_every_training_step(name):
    model_file, training_file = get_view(name).align()
    cls = EXAMPLES[name].torch_cls.__name__
    model_labels = [row.label for row in model_file.rows]
    assert f"class {cls}" in model_labels
    for step in ("parameters", "forward"):
        assert any(label.startswith(f"{cls}: {step}") for label in model_labels), model_labels
    for row in model_file.rows:
        assert row.torch is not None and row.flax is not None, _describe(row)

    roles = {(row.torch.role, row.flax.role) for row in training_file.rows}
    for role in (LOSS, GRADIENT, OPTIMIZER_STEP, TRAINING_LOOP):
        assert (role, role) in roles, f"{role} missing from {sorted(roles)}"


def test_optimizer_step_pairs_loop_fragment():
    training = get_view("training").align()[0]
    row = next(row for row in training.rows if row.label == OPTIMIZER_STEP)
    assert row.flax.name == "make_train_step"
    assert row.torch.fragment.context == "inside train"
    torch_text = row.torch.fragment.text()
    assert torch_text.lstrip().startswith("optimizer.zero_grad")
    assert torch_text.rstrip().endswith("optimizer.step()")


def _write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


TORCH_SOURCE = textwrap.dedent('''\
    """A torch module."""

    from torch import nn


    class Model(nn.Module):
        """Docs."""

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2)
            self.reset_parameters()

        def reset_parameters(self):
            nn.init.zeros_(self.linear.bias)

        def forward(self, x):
            return self.linear(x)


    def helper(x):
        return x
''')

FLAX_SOURCE = textwrap.dedent('''\
    """A Flax module."""

    from flax import linen as nn


    class Model(nn.Module):
        """Docs."""

        features: int = 2

        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(self.features)
            y = dense(x)
            return y


    def helper(x):
        return x
''')


def test_one_sided_public_step_breaks_mirror(tmp_path):
    torch_path = _write(tmp_path, "torch_model.py", TORCH_SOURCE + "\n\ndef extra():\n    return 1\n")
    flax_path = _write(tmp_path, "flax_model.py", FLAX_SOURCE)
    breaks = align_files(torch_path, flax_path).mirror_breaks()
    assert [row.torch.name for row in breaks] == ["extra"]
    assert breaks[0].flax is None


def test_one_sided_private_helper_allowed(tmp_path):
    torch_path = _write(tmp_path, "torch_model.py", TORCH_SOURCE + "\n\ndef _extra():\n    return 1\n")
    flax_path = _write(tmp_path, "flax_model.py", FLAX_SOURCE)
    alignment = align_files(torch_path, flax_path)
    assert alignment.mirror_breaks() == []
    assert any(row.torch is not None and row.torch.name == "_extra" and row.flax is None
               for row in alignment.rows)


def test_compact_and_reset_parameters_pair(tmp_path):
    torch_path = _write(tmp_path, "torch_model.py", TORCH_SOURCE)
    flax_path = _write(tmp_path, "flax_model.py", FLAX_SOURCE)
    rows = {row.label: row for row in align_files(torch_path, flax_path).rows}

    parameters = rows["Model: parameters (__init__ | @nn.compact __call__)"]
    # __init__ (lines 9-12) and the reset_parameters it calls (14-15) are one step.
    assert parameters.torch.fragment.spans == ((9, 15),)
    # The decorator, def line and the nn.Dense statement; the computation follows it.
    assert parameters.flax.fragment.spans == ((11, 13),)
    forward = rows["Model: forward (forward | __call__)"]
    assert forward.flax.fragment.spans == ((14, 15),)
    assert rows["class Model"].flax.fragment.text().rstrip().endswith("features: int = 2")


def test_alignment_follows_source_edits(tmp_path):
    torch_path = _write(tmp_path, "torch_model.py", TORCH_SOURCE)
    flax_path = _write(tmp_path, "flax_model.py", FLAX_SOURCE)
    before = {row.label: row.torch.fragment.spans for row in align_files(torch_path, flax_path).rows}
    torch_path.write_text(torch_path.read_text().replace('"""A torch module."""',
                                                         '"""A torch module.\n\nTwo more lines.\n"""'))
    after = {row.label: row.torch.fragment.spans for row in align_files(torch_path, flax_path).rows}
    assert after.keys() == before.keys()
    shifted = before["helper"][0][0] + 3
    assert after["helper"][0][0] == shifted


def test_missing_twin_file_is_reported(tmp_path):
    torch_path = _write(tmp_path, "torch_model.py", TORCH_SOURCE)
    with pytest.raises(ValueError, match="not found"):
        align_files(torch_path, tmp_path / "missing.py")


def test_header_holds_imports_and_constants(tmp_path):
    path = _write(tmp_path, "model.py", '''\
        """Doc."""

        import math

        # A comment on the constant.
        SCALE = math.pi


        def f():
            return SCALE
    ''')
    steps, nested = parse_steps(path)
    assert [step.key for step in steps] == ["header", "f"]
    assert steps[0].fragment.spans == ((1, 6),)
    assert nested == []


def test_missing_note_names_file_without_step(tmp_path):
    torch_path = _write(tmp_path, "torch_model.py", TORCH_SOURCE + "\n\ndef _extra():\n    return 1\n")
    flax_path = _write(tmp_path, "flax_model.py", FLAX_SOURCE + "\n\ndef extra():\n    return 1\n")
    rows = {row.label: row for row in align_files(torch_path, flax_path).rows}
    assert rows["_extra"].missing_note("flax_model.py") == "no counterpart in flax_model.py (private helper)"
    assert rows["extra"].missing_note("torch_model.py") == (
        "missing in torch_model.py: a public step without a twin")
