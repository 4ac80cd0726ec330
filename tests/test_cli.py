"""vaejax.cli.parse_flags: every bad flag of an experiment script is one `error:` line, exit 2."""
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from conftest import REPO
from vaejax import cli

CONFIG = """
import ml_collections
def get_config():
  c = ml_collections.ConfigDict()
  c.epochs = 3
  c.hidden = (64,)
  c.optim = ml_collections.ConfigDict({"eps": 1e-4})
  return c
"""
RAISES = """
from vaejax.config_checks import ConfigError
def get_config():
  raise ConfigError("smoke_config: x.py has no key 'epochz'")
"""
BUGGY = """
import ml_collections
def get_config():
  c = ml_collections.ConfigDict({"epochs": 3})
  c.lock()
  return c.epoch  # a bug in the file's code, not bad input
"""


def parse(tmp_path, capsys, *args, body=CONFIG):
  (tmp_path / "c.py").write_text(body)
  argv = ["prog", f"--config={tmp_path / 'c.py'}", *args]
  values = flags.FlagValues()
  # ml_collections finds the overrides in sys.argv unless given the argv to parse.
  config = config_flags.DEFINE_config_file("config", None, "config", flag_values=values,
                                           sys_argv=argv)
  flags.DEFINE_string("workdir", None, "workdir", flag_values=values)
  try:
    rest = cli.parse_flags(argv, flag_values=values)
  except SystemExit as e:
    assert e.code == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line
    return err.strip()
  return rest, config.value


def test_good_flags_parse_and_override(tmp_path, capsys):
  rest, config = parse(tmp_path, capsys, "--config.epochs=5", "--config.optim.eps=0.1",
                       "--workdir=w")
  assert rest == ["prog"]
  assert config.epochs == 5 and config.optim.eps == 0.1 and config.hidden == (64,)


def test_override_of_a_missing_key_names_it_and_suggests(tmp_path, capsys):
  line = parse(tmp_path, capsys, "--config.epochz=5")
  assert line.startswith("error: --config.epochz: the config has no key 'epochz'")
  assert '"epochs"' in line  # ml_collections' did-you-mean


def test_override_of_a_missing_nested_key_names_the_flag(tmp_path, capsys):
  line = parse(tmp_path, capsys, "--config.epochs=5", "--config.optim.epz=0.1")
  assert line.startswith("error: --config.optim.epz: the config has no key 'epz'")


def test_two_overrides_with_one_missing_key_name_the_failing_one(tmp_path, capsys):
  line = parse(tmp_path, capsys, "--config.optim.eps=0.1", "--config.epochs.eps=2")
  assert line.startswith("error: --config.epochs.eps:"), line


def test_override_below_an_int_is_one_line_naming_the_flag(tmp_path, capsys):
  line = parse(tmp_path, capsys, "--config.epochs.x=1")
  assert line.startswith("error: --config.epochs.x: ") and "has no key" not in line


def test_malformed_override_path_is_one_line(tmp_path, capsys):
  assert parse(tmp_path, capsys, "--config.a-b=1").startswith("error: ")


def test_override_below_a_tuple_is_one_line(tmp_path, capsys):
  line = parse(tmp_path, capsys, "--config.hidden.width=3")
  assert line.startswith("error: --config.hidden.width: TypeError:")


def test_bad_value_is_one_line(tmp_path, capsys):
  line = parse(tmp_path, capsys, "--config.epochs=two")
  assert line.startswith("error: flag --config.epochs=two:") and "'two'" in line


def test_error_raised_while_the_config_loads_keeps_only_its_reason(tmp_path, capsys):
  line = parse(tmp_path, capsys, body=RAISES)
  assert "Traceback" not in line and "Error whilst parsing config file" in line
  assert line.endswith("ConfigError: smoke_config: x.py has no key 'epochz'")


def test_a_bug_in_the_config_file_keeps_its_traceback(tmp_path, capsys):
  with pytest.raises(AttributeError):
    parse(tmp_path, capsys, "--config.epochs=5", body=BUGGY)
  with pytest.raises(AttributeError):
    parse(tmp_path, capsys, body=BUGGY)


def test_missing_config_file_in_a_flagfile_is_named(tmp_path, capsys):
  (tmp_path / "flags").write_text(f"--config={tmp_path / 'nope.py'}\n")
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=values)
  with pytest.raises(SystemExit) as e:
    cli.parse_flags(["prog", f"--flagfile={tmp_path / 'flags'}"], flag_values=values)
  assert e.value.code == 2
  assert capsys.readouterr().err == f"error: --config={tmp_path / 'nope.py'}: no such file\n"


def test_missing_config_file_is_named(tmp_path, capsys):
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=values)
  with pytest.raises(SystemExit) as e:
    cli.parse_flags(["prog", "--config", str(tmp_path / "nope.py:arg")], flag_values=values)
  assert e.value.code == 2
  assert capsys.readouterr().err == f"error: --config={tmp_path / 'nope.py'}: no such file\n"


def test_unknown_flag_is_one_line(tmp_path, capsys):
  assert parse(tmp_path, capsys, "--nosuchflag") == "error: Unknown command line flag 'nosuchflag'"


def test_one_line_joins_a_plain_multi_line_message():
  assert cli.one_line("flag --x: bad\n  because\n") == "flag --x: bad because"


def test_train_script_reports_a_config_key_typo_in_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "train.py"),
       "--config", str(REPO / "experiments" / "configs" / "vae_smoke.py"),
       "--workdir", str(tmp_path / "run"), "--config.latent_dimm=2"],
      capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode == 2
  assert proc.stderr.startswith("error: --config.latent_dimm: the config has no key 'latent_dimm'")
  assert proc.stderr.count("\n") == 1
  assert not (tmp_path / "run").exists()  # nothing written
