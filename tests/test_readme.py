"""The README's Python snippets run as written."""
import re
import shutil

from conftest import REPO


def test_readme_python_snippets_run(capsys, monkeypatch, tmp_path, trained_run):
  text = (REPO / "README.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  assert len(blocks) >= 2, "README lost its library or trained-model example"
  # "Use a trained model" loads runs/reference: here a smoke run of the same
  # model family stands in for it (the reference run takes minutes).
  shutil.copytree(trained_run, tmp_path / "runs" / "reference")
  monkeypatch.chdir(tmp_path)
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})
  assert "neg_iwae" in capsys.readouterr().out
  assert (tmp_path / "samples_grid.png").stat().st_size > 0
  assert (tmp_path / "interpolations_grid.png").stat().st_size > 0
