"""The Python snippets in both READMEs run as written."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = ["README.md", "README.zh-CN.md"]


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("readme", READMES)
def test_readme_python_blocks_run(readme, tmp_path, monkeypatch):
    blocks = _python_blocks(ROOT / readme)
    assert blocks, f"{readme} has no Python block"
    monkeypatch.chdir(tmp_path)  # snippets write files into the working directory
    for block in blocks:
        exec(compile(block, f"{readme} snippet", "exec"), {})


def test_readmes_give_the_same_commands():
    commands = [re.findall(r"```bash\n(.*?)```", (ROOT / name).read_text(encoding="utf-8"), flags=re.S)
                for name in READMES]
    strip = [[re.sub(r"\s*#.*", "", line) for block in blocks for line in block.splitlines()]
             for blocks in commands]
    assert strip[0] == strip[1]
