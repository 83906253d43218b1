"""``twins show --html DIR``: pages from the current sources, parity figures, offline, a screenshot."""

import html
import json
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from twins.cli import main
from twins.commands.parity import write_json
from twins.nqs_parity import CASES as NQS_CASES
from twins.nqs_parity import check_log_psi
from twins.parity import run_matrix
from twins.sidebyside.site import CONCEPT_MAP_PAGE, ParityFileError, build_site, load_parity_json
from twins.sidebyside.views import module_path, views

TAG = re.compile(r"<[^>]+>")
# Screenshot size in CSS pixels; tall enough for the parity table and two steps.
SCREENSHOT_WIDTH, SCREENSHOT_HEIGHT = 1400, 1200
# The concept note's left border colour (#f0b400) in PAGE_CSS, as RGB in [0, 1].
NOTE_BORDER_RGB = np.array([0xF0, 0xB4, 0x00]) / 255


@pytest.fixture(scope="module")
def parity_file(tmp_path_factory):
    """A real ``twins parity --json`` file: scale in float64, and log psi of the RBM and FFN."""
    path = tmp_path_factory.mktemp("parity") / "parity.json"
    rows = run_matrix(["scale"], dtypes=(np.float64,))
    rows += [check_log_psi(NQS_CASES[name], np.float64) for name in ("rbm", "ffn")]
    write_json(str(path), rows)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory, parity_file):
    out = tmp_path_factory.mktemp("site")
    build_site(out, parity_json=str(parity_file), log=lambda message: None)
    return out


def _text(page) -> str:
    return html.unescape(TAG.sub("", page.read_text()))


def test_site_has_index_and_every_page(site):
    index = (site / "index.html").read_text()
    for name in views():
        assert (site / f"{name}.html").exists()
        assert f'href="{name}.html"' in index
    assert (site / CONCEPT_MAP_PAGE).exists()
    assert f'href="{CONCEPT_MAP_PAGE}#parameter"' in index


@pytest.mark.parametrize("name", ["mlp", "scale", "rbm"])
def test_page_code_matches_sources(site, name):
    text = _text(site / f"{name}.html")
    for module in views()[name].modules:
        for package in ("torch_impl", "flax_impl"):
            for line in module_path(package, module).read_text().splitlines():
                if line.strip():
                    assert line.strip() in text, f"{package}/{module}.py line {line!r} not on the page"


def test_site_links_resolve(site):
    for page in site.glob("*.html"):
        for target, anchor in re.findall(r'href="([\w.-]+\.html)(?:#([\w-]+))?"', page.read_text()):
            assert (site / target).exists(), f"{page.name} links to missing {target}"
            if anchor:
                assert f'id="{anchor}"' in (site / target).read_text(), f"{page.name}: {target}#{anchor}"


def test_site_loads_nothing_remote(site):
    for page in site.glob("*.html"):
        source = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', source), page.name
        assert "<script" not in source
        assert '<link rel="stylesheet"' not in source


def test_parity_figures_from_json(site, parity_file):
    rows = [row for row in json.loads(parity_file.read_text()) if row["example"] == "scale"]
    text = _text(site / "scale.html")
    assert len(rows) == 4
    for row in rows:
        assert f"{row['max_rel']:.2e}" in text
    mlp_text = " ".join(_text(site / "mlp.html").split())
    assert "have no rows for mlp" in mlp_text


def test_rbm_page_shows_nqs_cases(site, parity_file):
    source = (site / "rbm.html").read_text()
    assert "<th>case</th>" in source
    for row in json.loads(parity_file.read_text()):
        if row["example"] in ("rbm", "ffn"):
            assert f"<td>{row['example']}</td><td>log_psi</td>" in source
            assert f"{row['max_rel']:.2e}" in source


def test_concept_note_between_steps(site):
    source = (site / "scale.html").read_text()
    parameters = source.index("Scale: parameters")
    note = source.index("<strong>nn.Parameter.</strong>")
    forward = source.index("Scale: forward")
    assert parameters < note < forward


def test_missing_figures_are_stated(tmp_path):
    build_site(tmp_path, run_parity=False, log=lambda message: None)
    text = " ".join(_text(tmp_path / "scale.html").split())
    assert "Parity figures missing" in text


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"rows": []}', "expected the list of rows"),
    ('[{"example": "scale"}]', "row 0 lacks"),
])
def test_bad_parity_json_rejected(tmp_path, content, message):
    path = tmp_path / "parity.json"
    path.write_text(content)
    with pytest.raises(ParityFileError, match=message):
        load_parity_json(path)


def test_cli_reports_missing_parity_file(tmp_path, capsys):
    assert main(["show", "--html", str(tmp_path / "site"), "--parity-json", str(tmp_path / "none.json")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_default_build_runs_parity(tmp_path):
    assert main(["show", "--html", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "parity.json").read_text())
    assert {row["example"] for row in rows} >= {"mlp", "scale", "rbm", "ffn"}
    assert "trajectory:adam" in _text(tmp_path / "mlp.html")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium for a headless screenshot")
def test_page_screenshot_renders(site, tmp_path):
    from matplotlib import image

    screenshot = tmp_path / "scale.png"
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
               "--hide-scrollbars", f"--window-size={SCREENSHOT_WIDTH},{SCREENSHOT_HEIGHT}",
               f"--screenshot={screenshot}", (site / "scale.html").as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=120)

    pixels = image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (SCREENSHOT_HEIGHT, SCREENSHOT_WIDTH)
    non_white = np.mean(np.any(pixels < 0.9, axis=-1))
    assert non_white > 0.05, f"page looks blank: {non_white:.1%} non-white pixels"
    # The inlined CSS applied: the concept note's border is drawn.
    border = np.all(np.abs(pixels - NOTE_BORDER_RGB) < 0.05, axis=-1)
    assert border.sum() > 100, "no concept note border in the screenshot; is the CSS applied?"
