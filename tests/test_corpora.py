"""The census-surname corpus through the data layer, seqvae's config checks, and
smoke runs of the sequence configs through the CLI's library entry point."""
import json
import pathlib
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from vaejax import config as config_lib, corpora, data, tokens

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_names_splits_are_disjoint_token_arrays_of_every_name():
  splits = {s: data.load("names", s) for s in ("train", "validation", "test")}
  assert {s: len(d) for s, d in splits.items()} == {"train": 71_040, "validation": 8_880,
                                                    "test": 8_879}
  words = {s: {tokens.decode(r, d.vocabulary) for r in d.images} for s, d in splits.items()}
  # Every name once: 88,799 distinct names in all, none in two splits.
  assert len(set().union(*words.values())) == sum(map(len, words.values())) == 88_799
  assert "SMITH" in words["train"] and "JOHNSON" in words["train"]
  for d in splits.values():
    assert d.images.shape[1:] == corpora.example_shape("names") == (14,)
    assert d.images.dtype == np.uint8 and d.example_key == "tokens" and d.labels is None
    assert int(d.images.max()) < len(d.vocabulary) == 30
    assert np.all((d.images == tokens.EOS).sum(axis=1) == 1)  # one EOS each, then PAD
  assert data.load("names", "valid").images.shape == splits["validation"].images.shape
  assert data.splits("names") == ["train", "validation", "test"]


def test_corpus_errors_name_the_problem(monkeypatch, tmp_path):
  with pytest.raises(data.DataError, match="no split 'dev'"):
    data.load("names", "dev")
  bad = tmp_path / "dist.all.last"
  bad.write_text("SMITH 1.0 1.0 1\nO'BRIEN 0.1 1.1 2\n")
  monkeypatch.setenv("VAEJAX_NAMES_FILE", str(bad))
  with pytest.raises(data.DataError, match="outside the vocabulary"):
    data.load("names", "train")
  monkeypatch.delenv("VAEJAX_NAMES_FILE")

  def missing(package):
    raise ModuleNotFoundError(f"No module named {package!r}")
  monkeypatch.setattr(corpora.importlib.resources, "files", missing)
  with pytest.raises(data.DataError, match="pip install names"):
    data.load("names", "test")


def _config(name, **overrides):
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / f"{name}.py"))
  config.update(overrides)
  return config


@pytest.mark.parametrize("overrides,message", [
    (dict(model="vae"), "corpus of token sequences: it needs model='seqvae'"),
    (dict(rnn_cell="rnn"), "rnn_cell"),
    (dict(word_dropout=1.0), "word_dropout=1.0 must be in"),
    (dict(decoder_input="none"), "word_dropout drops the decoder's inputs"),
    (dict(latent_dim=0, objective="iwae"), "RNN language model"),
    (dict(kl_warmup_shape="cosine"), "kl_warmup_shape"),
])
def test_sequence_configs_refuse_bad_settings_in_one_line(overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(_config("seqvae_names", **overrides))


def test_row_sequences_need_binary_pixels_and_the_bernoulli_likelihood():
  config_lib.validate(_config("vrae_seq_mnist"))
  with pytest.raises(config_lib.ConfigError, match="dynamic_binarization=True"):
    config_lib.validate(_config("vrae_seq_mnist", dataset="mnist"))
  with pytest.raises(config_lib.ConfigError, match="rnn_hidden applies to model='seqvae'"):
    config_lib.validate(_config("vrae_seq_mnist", model="vae", rnn_hidden=8))


@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
  """A finished seqvae_names_smoke run: (workdir, summary). Tests copy it before changing it."""
  from vaejax import experiment
  workdir = tmp_path_factory.mktemp("names") / "a"
  return workdir, experiment.run(_config("seqvae_names_smoke"), str(workdir), quiet=True)


def test_the_rnn_language_model_trains_checkpoints_and_reports_its_exact_likelihood(tmp_path):
  from vaejax import experiment
  config = _config("seqvae_names_smoke", latent_dim=0, kl_warmup_steps=0, word_dropout=0.0)
  summary = experiment.run(config, str(tmp_path), quiet=True)
  test = summary["test"]
  # No latent: the bound is log p(x) itself, so the importance-sampled NLL equals it.
  assert test["nll"] == pytest.approx(test["neg_elbo"], abs=1e-4) and test["kl"] == 0.0
  assert "mutual_information" not in test and "next_step_accuracy" not in test
  assert (tmp_path / "checkpoints" / "16").is_dir()
  assert "# Samples (no latent)" in (tmp_path / "samples.txt").read_text()


def test_the_evaluation_script_reports_perplexity_and_writes_text(names_run, tmp_path):
  workdir, summary = names_run
  result = subprocess.run(
      [sys.executable, "experiments/evaluate.py", f"--workdir={workdir}", "--k=20",
       "--subset=300", f"--out={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  evaluated = json.loads((tmp_path / "eval.json").read_text())["test"]
  assert "bits_per_dim" not in evaluated and "bits/token" in (tmp_path / "eval.md").read_text()
  assert evaluated["perplexity"] == pytest.approx(np.exp(evaluated["bits_per_token"] * np.log(2)))
  assert evaluated["nll"] <= evaluated["neg_elbo"] + 1e-3
  assert "# Homotopies" in (tmp_path / "samples.txt").read_text()


def test_names_smoke_run_reports_perplexity_collapse_metrics_text_and_resumes(names_run, tmp_path):
  from vaejax import experiment
  config = _config("seqvae_names_smoke")
  shutil.copytree(names_run[0], tmp_path / "a")
  summary = names_run[1]
  test = summary["test"]
  # 30 tokens: an untrained model scores ~log 30 = 3.4 nats per token, ~8 per name.
  assert summary["model"] == "seqvae" and summary["steps"] == 16
  assert 5 < test["perplexity"] < 30 and test["nll"] <= test["neg_elbo"] + 3 * test["nll_stderr"]
  assert test["perplexity"] == pytest.approx(float(np.exp(
      test["nll"] / _mean_steps(data.load("names", "test").spread(200)))), rel=1e-4)
  for key in ("active_units", "mutual_information", "next_step_accuracy",
              "next_step_accuracy_prior_z"):
    assert key in test
  assert test["mutual_information"] >= -0.1  # >= 0 up to the Monte-Carlo error
  text = (tmp_path / "a" / "samples.txt").read_text()
  assert "# Prior samples" in text and "# Homotopies" in text
  assert not (tmp_path / "a" / "samples.png").exists()
  # Killed after step 8: resuming ends where the whole run did (word dropout keys included).
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "16")
  (tmp_path / "b" / "summary.json").unlink()
  resumed = experiment.run(config, str(tmp_path / "b"), quiet=True)
  assert resumed["params_checksum"] == summary["params_checksum"]
  assert json.loads((tmp_path / "b" / "summary.json").read_text())["test"] == test
  from vaejax import runs
  run = runs.load_run(str(tmp_path / "a"))
  assert run.model.observation == "tokens" and run.model.length == 14
  # The report: Bowman's table row and the KL-over-training figure.
  report = subprocess.run(
      [sys.executable, "experiments/sequence_report.py", f"--runs=smoke={tmp_path / 'a'}",
       f"--out={tmp_path / 'report'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert report.returncode == 0, report.stderr[-2000:]
  rows = json.loads((tmp_path / "report" / "sequence_report.json").read_text())["rows"]
  assert rows[0]["nll"] == test["nll"] and rows[0]["word_dropout"] == 0.3
  assert (tmp_path / "report" / "kl_over_training.png").exists()
  assert (tmp_path / "report" / "smoke_samples.txt").read_text() == text


def _mean_steps(dataset):
  return float(np.mean((np.cumsum(dataset.images == tokens.EOS, axis=1)
                        - (dataset.images == tokens.EOS) == 0).sum(axis=1)))


def test_sequential_mnist_smoke_run_writes_row_by_row_samples(tmp_path, data_dir):
  from vaejax import experiment
  summary = experiment.run(_config("vrae_seq_mnist_smoke", data_dir=data_dir),
                           str(tmp_path), quiet=True)
  test = summary["test"]
  assert 100 < test["nll"] < 560 and "perplexity" not in test
  assert (tmp_path / "samples.png").exists() and (tmp_path / "reconstructions.png").exists()


def test_the_sequence_train_step_compiles_once():
  from vaejax import builders, models
  config = _config("seqvae_names_smoke", word_dropout=0.3)
  model = models.make(config, (14,))
  estimator = builders.build_estimator(config)
  optimizer = builders.build_optimizer(config, estimator, model=model)
  from vaejax import training
  loss = builders.build_loss(config, model, estimator)
  step = training.make_train_step(loss, optimizer, training.make_preprocess(1, False, 0.3))
  traced = jax.jit(chex.assert_max_traces(step, n=1))
  state = training.create_train_state(model.init(jax.random.PRNGKey(0)), optimizer,
                                      key=jax.random.PRNGKey(1))
  batch = {"tokens": data.load("names", "test").images[:16]}
  for _ in range(3):
    state, metrics = traced(state, batch)
  assert int(state.step) == 3 and np.isfinite(float(metrics["loss"]))


def test_image_figures_refuse_a_sequence_run_in_one_line(names_run, tmp_path):
  result = subprocess.run(
      [sys.executable, "experiments/figures.py", "--figure=traversal",
       f"--workdirs={names_run[0]}", f"--out={tmp_path}"], cwd=REPO, capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: ") and (
      "is a sequence VAE run" in result.stderr)
