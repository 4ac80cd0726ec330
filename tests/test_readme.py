"""The README's library snippet runs as written."""
import re

from conftest import REPO


def test_readme_python_snippet_runs(capsys):
  text = (REPO / "README.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert blocks, "README has no python example"
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})
  assert "neg_iwae" in capsys.readouterr().out
