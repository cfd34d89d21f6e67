"""The `irpo` command. Each stage's commands live in their own module and call one library
function; this package only parses arguments, shows progress and reports errors."""

from irpo.cli import run, sample, pairs, train, evaluate, report, data  # noqa: F401, I001  (registers commands, in order)
from irpo.cli.app import app


def main() -> None:
    app()
