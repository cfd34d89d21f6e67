"""The `irpo` command. Each stage's commands live in their own module and call one library
function; this package only parses arguments, shows progress and reports errors."""

from irpo.cli import data, pairs, run, sample, train  # noqa: F401  (registers commands)
from irpo.cli.app import app


def main() -> None:
    app()
