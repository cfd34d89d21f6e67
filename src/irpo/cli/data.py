"""`irpo check-data`: audit a task's data source, or a samples file a run wrote."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from irpo.tasks.audit import SamplesReport


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
    samples: Annotated[
        Path | None,
        typer.Option(
            "--samples",
            help="Audit this samples file (a run's samples.jsonl or an eval's *.greedy.jsonl) "
            "against the source's questions instead of the gold answers.",
        ),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", min=0, help="Most common unparsed endings to print.")
    ] = 10,
) -> None:
    """Count a data source's rows, check that every gold answer parses, show a few prompts.

    Without --source it audits the config's training data (task.train_source, task.train_split).
    With --samples it reads a samples file instead: samples per extraction rule under both
    answer modes, unparsed samples and their most common endings.
    """
    from irpo.tasks.audit import audit_samples
    from irpo.tasks.audit import check_data as audit

    cfg = load_run_config(config, overrides)
    if samples is not None:
        the_task = task_of(cfg, task, options)
        problems = the_task.load(
            source_of(cfg, "train", source),
            split_of(cfg, "train", split),
            limit=limit,
            skip_bad_rows=skip_bad_rows or cfg.task.skip_bad_rows,
        )
        echo_samples_report(audit_samples(the_task, problems, samples, top=top))
        return
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


def echo_samples_report(report: SamplesReport) -> None:
    """Print what `audit_samples` found."""
    typer.echo(f"samples {report.path}, task {report.task}")
    typer.echo(f"samples read:        {report.samples} ({report.questions} questions)")
    if report.unknown_questions:
        typer.echo(
            f"not in the source:   {report.unknown_questions} (pass the --source/--split "
            "the samples were drawn from)"
        )
    scored = report.samples - report.unknown_questions
    for mode, counts in report.modes.items():
        own = " (the task's mode)" if mode == report.answer_mode else ""
        rate = f"{100 * counts.unparsed / scored:.2f}%" if scored else "-"
        typer.echo(f"{mode}{own}: unparsed {counts.unparsed} ({rate}), correct {counts.correct}")
        for rule, n in sorted(counts.rules.items(), key=lambda item: -item[1]):
            typer.echo(f"  {rule:14} {n}")
    if report.stored_differs:
        typer.echo(
            f"stored verdicts that differ from the {report.answer_mode} verdict now: "
            f"{report.stored_differs}"
        )
    if report.unparsed_endings:
        typer.echo(f"most common unparsed endings ({report.answer_mode}):")
        for text, n, problem_id in report.unparsed_endings:
            typer.echo(f"  {n:5}  {text}   [e.g. {problem_id}]")
