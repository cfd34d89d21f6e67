"""`irpo check-data`: audit a task's data source."""

from __future__ import annotations

from typing import Any

import typer

from irpo.cli.app import app, command
from irpo.errors import IrpoError

TaskOption = typer.Option(
    None, "--option", help="Task option NAME=VALUE, repeatable: --option answer_type=number"
)


def parse_task_options(items: list[str]) -> dict[str, Any]:
    """`["answer_type=number", "max_number=50"]` -> {"answer_type": "number", "max_number": 50}."""
    from irpo.config import parse_override

    options: dict[str, Any] = {}
    for item in items:
        keys, value = parse_override(item)
        if len(keys) != 1:
            raise IrpoError(f"--option {item!r}: expected NAME=VALUE with a plain name")
        options[keys[0]] = value
    return options


@app.command("check-data")
@command
def check_data(
    task: str = typer.Argument(..., help="gsm8k, arc_challenge, math, arith or custom."),
    source: str | None = typer.Argument(
        None, help="File, folder or Hugging Face id (omit for arith)."
    ),
    split: str = typer.Option("test", "--split", "-s", help="Split (picks the file in a folder)."),
    skip_bad_rows: bool = typer.Option(
        False, "--skip-bad-rows", help="Skip and count unusable rows instead of failing."
    ),
    show: int = typer.Option(2, "--show", min=0, help="Rendered prompts to print."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Check only the first N rows."),
    options: list[str] | None = TaskOption,
    strict: bool = typer.Option(
        False, "--strict", help="Exit with status 1 when a row was skipped or a gold check failed."
    ),
) -> None:
    """Count a data source's rows, check that every gold answer parses, show a few prompts."""
    from irpo.tasks import get_task
    from irpo.tasks.audit import check_data as audit

    report = audit(
        get_task(task, **parse_task_options(options or [])),
        source,
        split,
        limit=limit,
        skip_bad_rows=skip_bad_rows,
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
