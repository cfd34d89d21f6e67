"""`irpo report` and `irpo compare`: tables and plots from run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irpo.cli.app import PANEL_REPORTS, app, command


@app.command(rich_help_panel=PANEL_REPORTS)
@command
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Write RUN/report/REPORT.md with plots, table.csv, table.json and report.html (one
    self-contained page: plots, pair statistics, a sample of the pairs)."""
    from irpo.report import write_report

    typer.echo(str(write_report(run_dir)))


@app.command(rich_help_panel=PANEL_REPORTS)
@command
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to put side by side.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/compare"),
) -> None:
    """Several runs (e.g. methods from one seed) in one table and one plot, and report.html
    (runs that differ only in `seed` as mean ± standard error over them)."""
    from irpo.report import compare as compare_runs

    path = compare_runs(list(run_dirs), out)
    typer.echo(path.read_text(encoding="utf-8"))
