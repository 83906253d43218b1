"""``twins show NAME`` in the terminal: two columns when wide, one when narrow."""

import io

import pytest
from rich.console import Console

from twins.cli import main
from twins.sidebyside.terminal import TWO_COLUMN_MIN_WIDTH, render
from twins.sidebyside.views import get_view, repository_root, views


def _render(name: str, width: int) -> list[str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    render(get_view(name).align(), console, repository_root())
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 160])
def test_lines_fit_width(width):
    lines = _render("mlp", width)
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, f"{len(too_long)} lines exceed {width} columns: {too_long[:2]}"


@pytest.mark.parametrize("width", [40, 80, 100, 160])
@pytest.mark.parametrize("name", list(views()))
def test_long_lines_wrap_not_cropped(name, width):
    # rich crops an unbreakable token with an ellipsis unless the column folds it.
    lines = _render(name, width)
    cropped = [line for line in lines if "\u2026" in line]
    assert not cropped, f"cropped at {width} columns: {cropped[:2]}"


def test_narrow_shows_torch_then_flax():
    lines = _render("mlp", TWO_COLUMN_MIN_WIDTH - 20)
    torch_index = next(i for i, line in enumerate(lines) if line.startswith("torch torch_impl/mlp.py:16-22"))
    flax_index = next(i for i, line in enumerate(lines) if line.startswith("flax  flax_impl/mlp.py:23-28"))
    assert torch_index < flax_index
    assert not any("torch_impl/mlp.py" in line and "flax_impl/mlp.py" in line
                   for line in lines if "|" not in line)


def test_wide_puts_twins_on_same_row():
    lines = _render("mlp", 160)
    assert any("torch_impl/mlp.py:16-22" in line and "flax_impl/mlp.py:23-28" in line for line in lines)
    # forward (torch line 26) and __call__ (Flax line 32) share a terminal row.
    assert any("26     return self.net(x)" in line and "32     return self.net(x)" in line
               for line in lines)


def test_every_step_label_printed():
    lines = "\n".join(_render("training", 120))
    for label in ("loss: mse_loss", "gradient: loss_and_grads", "optimizer step",
                  "training loop: train"):
        assert label in lines


def test_rbm_renders():
    lines = _render("rbm", 120)
    assert any("RBM: parameters" in line for line in lines)


def test_cli_show_prints_source(capsys):
    assert main(["show", "scale", "--width", "80"]) == 0
    output = capsys.readouterr().out
    assert 'self.param("weight"' in output
    assert "nn.Parameter(torch.tensor(1.0" in output


def test_cli_lists_views(capsys):
    assert main(["show"]) == 0
    output = capsys.readouterr().out
    for name in ("mlp", "rbm", "training"):
        assert name in output


@pytest.mark.parametrize("argv, message", [
    (["show", "nosuch"], "unknown name 'nosuch'"),
    (["show", "mlp", "--width", "20"], "--width 20 is too narrow"),
    (["show", "--parity-json", "x.json"], "only applies with --html"),
    (["show", "mlp", "--html", "site"], "omit 'mlp' with --html"),
])
def test_cli_rejects_bad_input(capsys, argv, message):
    assert main(argv) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert message in error
