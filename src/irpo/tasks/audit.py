"""Audit a task's data before training on it: rows read and skipped, gold answers that cannot be
trusted, and what the prompts look like.

A gold answer "parses" when every check of the task's `audit_gold` passes: it normalises (a
number for gsm8k, an option label for arc_challenge, a Math-Verify expression for math), the gold
completion (when the task has one) scores as correct, and for MATH500 the solution's `\\boxed{}`
answer is judged equal to its `answer` field. A gold answer that fails would make every sample of
its question a loser (IRPO Sec. 2: rewards come only from the final answer), so this is worth
knowing before a run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from irpo.records import Problem
from irpo.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass
class GoldIssue:
    """One problem whose gold data failed a check, and why."""

    problem_id: str
    reasons: list[str]


@dataclass
class DataReport:
    """What `check_data` found. `issues` keeps the first `max_issues` failing problems."""

    task: str
    source: str | None
    split: str
    rows: int
    loaded: int
    skipped: int
    skipped_reasons: list[str]
    gold_failed: int
    with_gold_completion: int
    issues: list[GoldIssue] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    gold_completions: list[str | None] = field(default_factory=list)

    @property
    def gold_ok(self) -> int:
        return self.loaded - self.gold_failed

    @property
    def gold_ok_rate(self) -> float:
        """Fraction of loaded problems whose gold data passed every check (1.0 when none)."""
        return self.gold_ok / self.loaded if self.loaded else 1.0


def check_data(
    task: Task,
    source: str | None,
    split: str,
    *,
    limit: int | None = None,
    skip_bad_rows: bool = False,
    show: int = 3,
    max_issues: int = 50,
) -> DataReport:
    """Load `split` of `source` with `task`, check every gold answer, render `show` prompts.

    Bad rows raise IrpoError (naming file and line) unless `skip_bad_rows`; then they are counted.
    """
    problems, stats = task.load_with_stats(source, split, limit=limit, skip_bad_rows=skip_bad_rows)
    report = DataReport(
        task=task.name,
        source=source,
        split=split,
        rows=stats.rows,
        loaded=len(problems),
        skipped=stats.skipped,
        skipped_reasons=list(stats.skipped_reasons),
        gold_failed=0,
        with_gold_completion=0,
    )
    for problem in problems:
        _check_one(task, problem, report, max_issues)
    for problem in problems[:show]:
        report.prompts.append(task.prompt(problem))
        report.gold_completions.append(task.gold_completion(problem))
    log.info(
        "check-data %s %s [%s]: %d rows, %d loaded, %d skipped, %d gold failed (%.2f%% ok)",
        task.name,
        source,
        split,
        report.rows,
        report.loaded,
        report.skipped,
        report.gold_failed,
        100 * report.gold_ok_rate,
    )
    return report


def _check_one(task: Task, problem: Problem, report: DataReport, max_issues: int) -> None:
    if task.gold_completion(problem) is not None:
        report.with_gold_completion += 1
    reasons = task.audit_gold(problem)
    if reasons:
        report.gold_failed += 1
        if len(report.issues) < max_issues:
            report.issues.append(GoldIssue(problem.id, reasons))
