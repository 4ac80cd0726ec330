"""Command-line flag parsing for the experiment scripts: every bad flag is one line.

absl prints a flag error as "FATAL Flags parsing error" plus a usage hint, and
ml_collections lets two kinds of mistake escape as tracebacks: an exception
raised while a config file loads (its whole traceback becomes the message), and
an override of a key the config lacks (`--config.epochz=2`, an AttributeError).
`parse_flags` turns each into `error: <flag>: <reason>` on stderr and exit
status 2, the status the scripts give every other bad input.

  app.run(main, flags_parser=cli.parse_flags)
"""
from __future__ import annotations

import os
import re
import sys
from typing import NoReturn, Sequence

from absl import flags

_CONFIG_OVERRIDE = re.compile(r"^--?(\w+)\.([\w.]+)(?:=|$)")


def parse_flags(argv: Sequence[str], *, flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl's flag parsing (`flag_values(argv)`) with every error as one line; exits 2.

  Returns the arguments left after the flags, program name first, like absl's own
  parser. Prints `error: ...` and raises SystemExit(2) on a bad flag, a missing
  `--config` file (ml_collections would only fail at the config's first use) or an
  override the config cannot take.
  """
  missing = [path for path in _config_paths(argv) if not os.path.isfile(path)]
  if missing:
    _exit(f"--config={missing[0]}: no such file")
  try:
    return flag_values(list(argv))
  except flags.Error as e:
    _exit(one_line(str(e)))
  except (AttributeError, KeyError, TypeError, IndexError) as e:  # ml_collections overrides
    _exit(_override_line(e, argv))


def one_line(message: str) -> str:
  """A flag error's message in one line: a traceback inside it keeps only its last line."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if not lines:
    return "invalid flags"
  if any(line.startswith("Traceback (most recent call last)") for line in lines):
    head = lines[0].rstrip(":")
    return f"{head}: {lines[-1]}"
  return " ".join(lines)


def _config_paths(argv: Sequence[str]) -> list[str]:
  """The files named by --config (its value before any ':' holds arguments for get_config)."""
  paths = []
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      break
    if arg in ("--config", "-config") and i + 1 < len(argv):
      paths.append(argv[i + 1].split(":", 1)[0])
    elif arg.startswith(("--config=", "-config=")):
      paths.append(arg.split("=", 1)[1].split(":", 1)[0])
  return paths


def _override_line(error: Exception, argv: Sequence[str]) -> str:
  """`--config.a.b=...`'s failure in one line, naming the key when the config lacks it."""
  reason = error
  while reason.args and isinstance(reason.args[0], BaseException):  # AttributeError(KeyError(..))
    reason = reason.args[0]
  overrides = [arg.split("=", 1)[0] for arg in argv[1:] if _CONFIG_OVERRIDE.match(arg)]
  if isinstance(reason, KeyError) and reason.args and isinstance(reason.args[0], str):
    key, _, hint = reason.args[0].partition("\n")
    named = [flag for flag in overrides if key.strip("'\"") in flag.split(".")[1:]]
    where = named[0] if named else "--config override"
    line = f"{where}: the config has no key {key}"
    return f"{line} ({hint.strip()})" if hint.strip() else line
  where = overrides[0] if len(overrides) == 1 else "--config override"
  return f"{where}: {type(reason).__name__}: {one_line(str(reason))}"


def _exit(line: str) -> NoReturn:
  print(f"error: {line}", file=sys.stderr)
  sys.exit(2)
