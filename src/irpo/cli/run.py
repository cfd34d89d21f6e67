"""`irpo run` and `irpo demo`: every iteration of the method, then its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irpo.cli.app import PANEL_RUN, app, command
from irpo.cli.options import SetOpt, progress_bars

AllowChange = Annotated[
    bool, typer.Option(help="Continue an existing run whose configuration differs.")
]


@app.command(rich_help_panel=PANEL_RUN)
@command
def run(
    config: Annotated[Path, typer.Argument(help="YAML run configuration.")],
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", "-o", help="Run directory (default: runs/<config name>)."),
    ] = None,
    overrides: SetOpt = None,
    allow_config_change: AllowChange = False,
) -> None:
    """Run every iteration (sample, verify, pair, train, evaluate); resume where it stopped."""
    from irpo.config import load_config
    from irpo.loop import run as run_loop
    from irpo.report import seed_gain_sentence, write_report
    from irpo.rundir import RunDir

    cfg = load_config(config, overrides or [])
    out = run_dir or Path("runs") / config.stem
    run_loop(cfg, out, allow_config_change=allow_config_change, progress=progress_bars)
    report = write_report(out)
    typer.echo(
        report.read_text(encoding="utf-8")
        .split("## Held-out accuracy", 1)[-1]
        .split("![")[0]
        .strip()
    )
    if gain := seed_gain_sentence(RunDir(out)):
        typer.echo(f"\n{gain}")
    typer.echo(f"\nreport: {report} (and {report.with_name('report.html')})")


@app.command(rich_help_panel=PANEL_RUN)
@command
def demo(
    run_dir: Annotated[Path, typer.Option("--run-dir", "-o", help="Run directory.")] = Path(
        "runs/demo"
    ),
    overrides: SetOpt = None,
    allow_config_change: AllowChange = False,
) -> None:
    """The embedded default: a seed model trained from scratch on `arith`, then Iterative RPO.

    Offline, CPU, about ten minutes on a 2-core laptop; a second run reuses the cached seed model.
    """
    from irpo.config import demo_config_path

    run(demo_config_path(), run_dir, overrides, allow_config_change)
