"""`irpo check-data`: audit a task's data source."""

from __future__ import annotations

from typing import Annotated

import typer

from irpo.cli.app import PANEL_REPORTS, app, command
from irpo.cli.options import (
    ConfigOpt,
    LimitOpt,
    SetOpt,
    SourceOpt,
    SplitOpt,
    TaskOpt,
    TaskOptionsOpt,
    load_run_config,
    source_of,
    split_of,
    task_of,
)


@app.command("check-data", rich_help_panel=PANEL_REPORTS)
@command
def check_data(
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    options: TaskOptionsOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    skip_bad_rows: Annotated[
        bool,
        typer.Option(
            "--skip-bad-rows/--no-skip-bad-rows",
            help="Skip and count unusable rows instead of failing (default: task.skip_bad_rows).",
        ),
    ] = False,
    show: Annotated[int, typer.Option("--show", min=0, help="Rendered prompts to print.")] = 2,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit with status 1 when a row was skipped or a gold check failed."
        ),
    ] = False,
) -> None:
    """Count a data source's rows, check that every gold answer parses, show a few prompts.

    Without --source it audits the config's training data (task.train_source, task.train_split).
    """
    from irpo.tasks.audit import check_data as audit

    cfg = load_run_config(config, overrides)
    report = audit(
        task_of(cfg, task, options),
        source_of(cfg, "train", source),
        split_of(cfg, "train", split),
        limit=limit,
        skip_bad_rows=skip_bad_rows or cfg.task.skip_bad_rows,
        show=show,
    )
    typer.echo(f"task {report.task}, source {report.source or '(generated)'}, split {report.split}")
    typer.echo(f"rows read:           {report.rows}")
    typer.echo(f"problems loaded:     {report.loaded}")
    typer.echo(f"bad rows skipped:    {report.skipped}")
    for reason in report.skipped_reasons[:10]:
        typer.echo(f"  {reason}")
    typer.echo(f"with gold solution:  {report.with_gold_completion}")
    typer.echo(
        f"gold not parsed:     {report.gold_failed} "
        f"({100 * report.gold_ok_rate:.2f}% of gold answers parse)"
    )
    for issue in report.issues[:20]:
        typer.echo(f"  {issue.problem_id}: {'; '.join(issue.reasons)}")
    for i, (prompt, gold) in enumerate(zip(report.prompts, report.gold_completions, strict=True)):
        typer.echo(f"\n--- prompt {i + 1} ---\n{prompt}")
        if gold is not None:
            typer.echo(f"--- gold completion {i + 1} ---\n{gold}")
    if strict and (report.skipped or report.gold_failed):
        raise typer.Exit(1)
