"""Audit a task's data before training on it: rows read and skipped, gold answers that cannot be
trusted, and what the prompts look like.

A gold answer "parses" when every check of the task's `audit_gold` passes: it normalises (a
number for gsm8k, an option label for arc_challenge, a Math-Verify expression for math), the gold
completion (when the task has one) scores as correct, and for MATH500 the solution's `\\boxed{}`
answer is judged equal to its `answer` field. A gold answer that fails would make every sample of
its question a loser (IRPO Sec. 2: rewards come only from the final answer), so this is worth
knowing before a run.

`audit_samples` does the same for what a model wrote: it re-scores a samples file under both
answer modes and counts the samples each extraction rule read, the unparsed ones and their most
common endings, so that a prompt asking for one format while the checker reads another shows at
once.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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


# --------------------------------------------------------------------------- samples


@dataclass
class ModeCounts:
    """How one answer mode reads a samples file: samples per extraction rule, unparsed, correct."""

    rules: dict[str, int] = field(default_factory=dict)
    unparsed: int = 0
    correct: int = 0


@dataclass
class SamplesReport:
    """What `audit_samples` found in a samples file (`irpo check-data --samples`).

    `modes` re-scores every sample under both answer modes; `unparsed_endings` are the most
    common last lines of the samples the task's mode cannot read (digits shown as "N"), each with
    its count and one question id; `stored_differs` counts samples whose stored verdict differs
    from the task's verdict now (a file scored with another mode or another irpo version).
    """

    path: str
    task: str
    answer_mode: str
    samples: int = 0
    questions: int = 0
    unknown_questions: int = 0
    """Samples whose question is not in the loaded source (not scored)."""
    stored_differs: int = 0
    modes: dict[str, ModeCounts] = field(default_factory=dict)
    unparsed_endings: list[tuple[str, int, str]] = field(default_factory=list)


def ending(text: str, width: int = 80) -> str:
    """The last non-empty line of a completion, spaces collapsed, digits as "N", cut to `width`."""
    lines = [line for line in text.splitlines() if line.strip()]
    last = " ".join(lines[-1].split()) if lines else "(empty)"
    last = re.sub(r"\d+", "N", last)
    return last if len(last) <= width else last[: width - 3] + "..."


def audit_samples(
    task: Task, problems: list[Problem], path: str | Path, *, top: int = 10
) -> SamplesReport:
    """Re-score the samples of `path` (a sampling stage's or an evaluation's JSONL) against
    `problems` under both answer modes; count rules, unparsed samples and common endings."""
    from irpo.records import read_samples
    from irpo.tasks.answers import ANSWER_MODES

    by_id = {p.id: p for p in problems}
    report = SamplesReport(
        path=str(path),
        task=task.name,
        answer_mode=task.answer_mode,
        modes={mode: ModeCounts() for mode in ANSWER_MODES},
    )
    endings: Counter[str] = Counter()
    example: dict[str, str] = {}
    seen: set[str] = set()
    for sample in read_samples(path):
        report.samples += 1
        problem = by_id.get(sample.problem_id)
        if problem is None:
            report.unknown_questions += 1
            continue
        seen.add(sample.problem_id)
        verdicts = task.score_modes(sample.text, problem)
        for mode, verdict in verdicts.items():
            counts = report.modes[mode]
            if verdict.answer is None:
                counts.unparsed += 1
            else:
                rule = verdict.rule or "other"
                counts.rules[rule] = counts.rules.get(rule, 0) + 1
            counts.correct += verdict.correct
        own = verdicts[task.answer_mode]
        if sample.correct is not None and (sample.answer, bool(sample.correct)) != (
            own.answer,
            own.correct,
        ):
            report.stored_differs += 1
        if own.answer is None:
            end = ending(sample.text)
            endings[end] += 1
            example.setdefault(end, sample.problem_id)
    report.questions = len(seen)
    report.unparsed_endings = [(e, n, example[e]) for e, n in endings.most_common(top)]
    return report
