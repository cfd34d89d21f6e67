"""The `irpo` command. Each stage's commands live in their own module and call one library
function; this package only parses arguments, shows progress and reports errors.

Several commands can run in one process, one after the other, separated by `--then`
(`irpo eval ... --then sample ...`): they share the interpreter and a loaded model, and the
first that fails stops the rest with its exit status. `irpo run` launches a stage's processes
this way when consecutive stages use the same model and processes (irpo.launch).
"""

import sys
from collections.abc import Sequence

# isort: off
from irpo.cli import run, sample, pairs, train, evaluate, report, data  # noqa: F401  (registers commands, in order)
from irpo.cli.app import app

# isort: on
from irpo.launch import THEN


def split_commands(argv: Sequence[str]) -> list[list[str]]:
    """`a ... --then b ...` -> [[a, ...], [b, ...]]."""
    parts: list[list[str]] = [[]]
    for arg in argv:
        if arg == THEN:
            parts.append([])
        else:
            parts[-1].append(arg)
    return parts


def main(argv: Sequence[str] | None = None) -> None:
    parts = split_commands(sys.argv[1:] if argv is None else argv)
    for part in parts[:-1]:
        try:
            app(args=part, prog_name="irpo")
        except SystemExit as e:
            if e.code not in (0, None):
                raise
    app(args=parts[-1], prog_name="irpo")
