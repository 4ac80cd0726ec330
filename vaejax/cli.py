"""Command-line flag parsing for experiments/train.py and compare_estimators.py: bad input
is one line.

absl prints a flag error as "FATAL Flags parsing error" plus a usage hint (exit 1),
and ml_collections lets mistakes in `--config` input escape as tracebacks: a
ConfigError raised while the config file loads (the whole traceback becomes the
message), an override of a key the config lacks (`--config.epochz=2`, an
AttributeError) or of a malformed path, and a missing file, which fails only at
the config's first use. `parse_flags` prints each as `error: <flag>: <reason>` on
stderr and exits with status 2, the status the scripts give every other bad input.
A bug in a config file's code (any other exception while it loads) keeps its
traceback.

  app.run(main, flags_parser=cli.parse_flags)
"""
from __future__ import annotations

import os
import re
import sys
import traceback
from typing import NoReturn, Sequence

from absl import flags

_CONFIG_FLAG = "config"  # the scripts' config-file flag (ml_collections DEFINE_config_file)
_MISSING_KEY = re.compile(r"^'([^'\n]+)'(?:\n(.*))?$", re.S)  # ConfigDict's KeyError message
_INPUT_ERROR_TYPES = ("ConfigError",)  # raised by a config file: bad input, not a bug


def parse_flags(argv: Sequence[str], *, flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl's flag parsing (`flag_values(argv)`) with bad input as one line; exits 2.

  Returns the arguments left after the flags, program name first, like absl's own
  parser. Prints `error: ...` and raises SystemExit(2) on: an unknown or malformed
  flag, a `--config` file that does not exist (also one named in a --flagfile), a
  ConfigError raised while the config file loads, and a `--config.key=value`
  override the config cannot take. Any other exception raised while the config
  file loads propagates with its traceback.
  """
  expanded = flag_values.read_flags_from_files(list(argv), force_gnu=False)
  for path in _config_paths(expanded):
    if os.path.isdir(path):
      _exit(f"--config={path}: is a folder, not a config file")
    if not os.path.exists(path):  # a pipe (--config <(...)) exists but is not a file
      _exit(f"--config={path}: no such file")
  try:
    return flag_values(list(argv))
  except flags.Error as e:
    message = str(e)
    if _has_traceback(message) and not _lines(message)[-1].split(":")[0].endswith(
        _INPUT_ERROR_TYPES):
      raise  # a bug in the config file's code: its traceback is the useful part
    _exit(one_line(message))
  except Exception as e:  # noqa: BLE001 (narrowed just below to override parsing)
    field_path = _failed_override(e)
    if field_path is None:
      raise
    _exit(_override_line(e, field_path, expanded))


def one_line(message: str) -> str:
  """A flag error's message in one line: its first line, and of a traceback inside it
  only the traceback's last line (the exception); other lines joined by spaces."""
  lines = _lines(message)
  if not lines:
    return "invalid flags"
  if _has_traceback(message):
    return f"{lines[0].rstrip(':')}: {lines[-1]}"
  return " ".join(lines)


def _has_traceback(message: str) -> bool:
  return "Traceback (most recent call last)" in message


def _lines(message: str) -> list[str]:
  return [line.strip() for line in message.splitlines() if line.strip()]


def _config_paths(argv: Sequence[str]) -> list[str]:
  """The files named by --config (its value before any ':' holds get_config's arguments)."""
  paths = []
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      break
    if arg in (f"--{_CONFIG_FLAG}", f"-{_CONFIG_FLAG}") and i + 1 < len(argv):
      paths.append(argv[i + 1].split(":", 1)[0])
    elif arg.startswith((f"--{_CONFIG_FLAG}=", f"-{_CONFIG_FLAG}=")):
      paths.append(arg.split("=", 1)[1].split(":", 1)[0])
  return [path for path in paths if path]


def _failed_override(error: Exception) -> str | None:
  """The override being parsed when `error` was raised: 'a.b' of --config.a.b ('' when
  ml_collections was checking all of them), or None when it was not raised while
  parsing overrides (while loading the config file, say)."""
  field_path = None
  for frame, _ in traceback.walk_tb(error.__traceback__):
    if "ml_collections" not in frame.f_code.co_filename:
      continue
    owner = type(frame.f_locals.get("self")).__name__
    if frame.f_code.co_name == "parse" and owner == "ConfigFileFlagParser":
      return None  # loading the config file: its own code raised
    if frame.f_code.co_name == "_parse" and isinstance(frame.f_locals.get("self"), flags.Flag):
      field_path = frame.f_locals.get("field_path", "")
  return field_path


def _override_line(error: Exception, field_path: str, argv: Sequence[str]) -> str:
  """`--config.a.b`'s failure in one line, naming the key when the config lacks it."""
  reason = error
  while reason.args and isinstance(reason.args[0], BaseException):  # AttributeError(KeyError(..))
    reason = reason.args[0]
  overrides = [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith(f"--{_CONFIG_FLAG}.")]
  where = (f"--config.{field_path}" if field_path else
           f"one of the overrides {', '.join(overrides)}" if overrides else "a --config override")
  if isinstance(reason, KeyError) and reason.args and isinstance(reason.args[0], str):
    missing = _MISSING_KEY.match(reason.args[0])
    if missing:
      key, hint = missing.group(1), (missing.group(2) or "").strip()
      line = f"{where}: the config has no key '{key}'"
      return f"{line} ({hint})" if hint else line
  text = reason.args[0] if reason.args and isinstance(reason.args[0], str) else str(reason)
  return f"{where}: {type(reason).__name__}: {one_line(text)}"


def _exit(line: str) -> NoReturn:
  print(f"error: {line}", file=sys.stderr)
  sys.exit(2)
