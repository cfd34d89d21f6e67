"""`irpo run`, `irpo demo`, `irpo report`, `irpo compare`: the whole method, and its reports."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from irpo.cli.app import SetOption, app, command


def progress_bars(desc: str, total: int) -> Any:
    """A tqdm bar per stage (the library reports progress through this callback only)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False)

    def update(n: int = 1, **postfix: Any) -> None:
        bar.update(n)
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        if bar.n >= total:
            bar.close()

    return update


AllowChange = Annotated[
    bool, typer.Option(help="Continue an existing run whose configuration differs.")
]


@app.command()
@command
def run(
    config: Annotated[Path, typer.Argument(help="YAML run configuration.")],
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", "-o", help="Run directory (default: runs/<config name>)."),
    ] = None,
    overrides: list[str] | None = SetOption,
    allow_config_change: AllowChange = False,
) -> None:
    """Run every iteration (sample, verify, pair, train, evaluate); resume where it stopped."""
    from irpo.config import load_config
    from irpo.loop import run as run_loop
    from irpo.report import write_report

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
    typer.echo(f"\nreport: {report}")


def demo_config_path() -> Path:
    return Path(str(resources.files("irpo") / "configs" / "demo.yaml"))


@app.command()
@command
def demo(
    run_dir: Annotated[Path, typer.Option("--run-dir", "-o", help="Run directory.")] = Path(
        "runs/demo"
    ),
    overrides: list[str] | None = SetOption,
    allow_config_change: AllowChange = False,
) -> None:
    """The embedded default: a seed model trained from scratch on `arith`, then Iterative RPO.

    Offline, CPU, about ten minutes on a 2-core laptop; a second run reuses the cached seed model.
    """
    run(demo_config_path(), run_dir, overrides, allow_config_change)


@app.command()
@command
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Write RUN/report/REPORT.md with plots, table.csv and table.json."""
    from irpo.report import write_report

    typer.echo(str(write_report(run_dir)))


@app.command()
@command
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories to put side by side.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/compare"),
) -> None:
    """Several runs (e.g. methods from one seed) in one table and one plot."""
    from irpo.report import compare as compare_runs

    path = compare_runs(list(run_dirs), out)
    typer.echo(path.read_text(encoding="utf-8"))
