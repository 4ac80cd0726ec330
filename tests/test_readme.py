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
  # The sequence VAE's example loads runs/names_fixes: its smoke config stands in.
  from vaejax import config as config_lib, experiment
  names_config = config_lib.load_config_file(
      str(REPO / "experiments" / "configs" / "seqvae_names_smoke.py"))
  experiment.run(names_config, str(tmp_path / "runs" / "names_fixes"), quiet=True)
  monkeypatch.chdir(tmp_path)
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})
  out = capsys.readouterr().out
  assert "neg_iwae" in out
  assert re.search(r"\[('[A-Z_]*', ){3}'[A-Z_]*'\] [A-Z_]*\n", out), out[-500:]
  assert (tmp_path / "samples_grid.png").stat().st_size > 0
  assert (tmp_path / "interpolations_grid.png").stat().st_size > 0
