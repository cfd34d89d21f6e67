"""Evaluation: greedy accuracy, maj@K, pass@K and the parse-failure rate.

The paper reports exact match of the final answer under greedy decoding, and majority voting
over 32 samples at temperature 0.8 (maj@32, section 3). The aggregation here is pure (scored
samples in, metrics out) and uses the task's normalised answer (`Verdict.answer`) for votes,
the same normaliser that labels training pairs. `evaluate_model` is the part that runs a model:
it samples through `irpo.sampling.sample_problems` (resumable) and aggregates.

Majority vote rule: votes are grouped by answer; unparseable samples do not vote; the group
with the most votes wins, and a tie goes to the tied group whose first vote has the lowest
sample index. A question with no parseable sample has no majority answer (wrong). Answers are
grouped by the task's `same_answer`: equal normalised strings for the numeric tasks, and
Math-Verify equivalence for MATH, so "0.5" and "\\frac{1}{2}" are one vote group there. A
group is named by its first answer (lowest sample index), and each new answer joins the first
group whose name it equals.

Answer modes: the headline metrics use the verdicts stored with the samples (the task's
`answer_mode`, the rule that also labels training pairs). `evaluate_files` re-scores the same
samples under both modes (`strict`: the "Final answer:" marker only; `flexible`: the marker,
then the fall-backs of `irpo.tasks.answers`) and reports each mode's accuracies and the counts
per extraction rule in `EvalResult.modes`, as lm-eval reports strict match and flexible extract;
each question's `greedy_rule` and `by_mode` say which rule found its answer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irpo.records import Problem, Sample, read_samples, write_json

if TYPE_CHECKING:
    from irpo.config import EvalConfig
    from irpo.sampling import Engine, ProgressCallback, Shard
    from irpo.tasks.base import Task

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pure aggregation


SameAnswer = Callable[[str, str], bool]
"""(first answer of a vote group, another answer) -> whether they are the same answer."""


def _exact(a: str, b: str) -> bool:
    return a == b


def vote_groups(
    samples: Sequence[Sample], same_answer: SameAnswer | None = None
) -> list[list[Sample]]:
    """Parsed samples grouped by answer, in index order, groups in order of first vote."""
    same = same_answer or _exact
    groups: list[list[Sample]] = []
    for s in sorted((s for s in samples if s.answer is not None), key=lambda s: s.index):
        assert s.answer is not None
        group = next((g for g in groups if same(str(g[0].answer), s.answer)), None)
        if group is None:
            groups.append([s])
        else:
            group.append(s)
    return groups


def winning_group(groups: Sequence[list[Sample]]) -> list[Sample] | None:
    """The group with the most votes, ties going to the group voted first; None without votes."""
    return max(groups, key=len) if groups else None  # max keeps the first of equal lengths


def majority_vote(
    samples: Sequence[Sample], same_answer: SameAnswer | None = None
) -> Sample | None:
    """The first sample (lowest index) of the winning group (`winning_group`), or None when
    none parsed."""
    top = winning_group(vote_groups(samples, same_answer))
    return top[0] if top else None


@dataclass(frozen=True)
class QuestionResult:
    """One question's evaluation; fields of a disabled metric are None."""

    problem_id: str
    gold: str
    greedy_answer: str | None = None
    greedy_correct: bool | None = None
    maj_answer: str | None = None
    maj_correct: bool | None = None
    maj_votes: int | None = None
    """Votes for the majority answer."""
    pass_correct: bool | None = None
    """At least one of the K samples is correct (pass@K)."""
    num_correct: int | None = None
    num_unparseable: int | None = None
    answers: dict[str, int] | None = None
    """Votes per answer group (named by its first answer), in order of first vote."""
    greedy_rule: str | None = None
    """The extraction rule that found the greedy answer under the task's answer mode."""
    by_mode: dict[str, dict[str, Any]] | None = None
    """Per answer mode: greedy_answer, greedy_correct, greedy_rule, and for sampled passes
    maj_correct, num_correct, num_unparseable."""


def score_question(
    problem: Problem,
    greedy: Sample | None,
    samples: Sequence[Sample] | None,
    same_answer: SameAnswer | None = None,
) -> QuestionResult:
    """Greedy verdict and maj/pass verdicts of one question from its scored samples."""
    fields: dict[str, Any] = {"problem_id": problem.id, "gold": problem.answer}
    if greedy is not None:
        fields.update(greedy_answer=greedy.answer, greedy_correct=bool(greedy.correct))
    if samples is not None:
        groups = vote_groups(samples, same_answer)
        top = winning_group(groups)
        winner = top[0] if top else None
        answers = {str(g[0].answer): len(g) for g in groups}
        fields.update(
            maj_answer=winner.answer if winner else None,
            maj_correct=bool(winner.correct) if winner else False,
            maj_votes=len(top) if top else 0,
            pass_correct=any(s.correct for s in samples),
            num_correct=sum(bool(s.correct) for s in samples),
            num_unparseable=sum(s.answer is None for s in samples),
            answers=dict(answers),
        )
    return QuestionResult(**fields)


@dataclass
class EvalResult:
    """Accuracies are fractions in [0, 1]; a disabled metric is None."""

    num_problems: int
    k: int
    greedy_accuracy: float | None
    maj_accuracy: float | None
    pass_accuracy: float | None
    parse_failure_rate: float | None
    """Unparseable samples / all scored samples (greedy and sampled together)."""
    greedy_parse_failure_rate: float | None
    sampled_parse_failure_rate: float | None
    per_question: list[QuestionResult] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    answer_mode: str | None = None
    """The task's answer mode, that of the headline metrics."""
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per answer mode: greedy/maj/pass accuracy, parse failure rate and `rules` (scored samples
    per extraction rule, "unparsed" for none)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_question"] = [asdict(q) for q in self.per_question]
        return d


def aggregate(
    results: Sequence[QuestionResult], k: int, settings: dict[str, Any] | None = None
) -> EvalResult:
    """Metrics over questions. k is the number of samples per question for maj/pass (0: none)."""
    greedy = [r.greedy_correct for r in results if r.greedy_correct is not None]
    sampled = [r for r in results if r.maj_correct is not None]
    greedy_fail = sum(r.greedy_answer is None for r in results if r.greedy_correct is not None)
    sampled_fail = sum(r.num_unparseable or 0 for r in sampled)
    scored = len(greedy) + k * len(sampled)
    return EvalResult(
        num_problems=len(results),
        k=k,
        greedy_accuracy=_mean(greedy),
        maj_accuracy=_mean([bool(r.maj_correct) for r in sampled]),
        pass_accuracy=_mean([bool(r.pass_correct) for r in sampled]),
        parse_failure_rate=(greedy_fail + sampled_fail) / scored if scored else None,
        greedy_parse_failure_rate=greedy_fail / len(greedy) if greedy else None,
        sampled_parse_failure_rate=sampled_fail / (k * len(sampled)) if sampled else None,
        per_question=list(results),
        settings=dict(settings or {}),
    )


def _mean(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def evaluate_samples(
    problems: Sequence[Problem],
    greedy: Sequence[Sample] | None,
    sampled: Sequence[Sample] | None,
    k: int,
    settings: dict[str, Any] | None = None,
    same_answer: SameAnswer | None = None,
) -> EvalResult:
    """Metrics from scored samples: greedy (one per problem) and/or K sampled per problem.

    `same_answer` groups majority votes (default: equal answer strings; `Task.same_answer`).
    """
    greedy_by = {s.problem_id: s for s in greedy or ()}
    sampled_by: dict[str, list[Sample]] = {}
    for s in sampled or ():
        sampled_by.setdefault(s.problem_id, []).append(s)
    results = [
        score_question(
            p,
            greedy_by.get(p.id) if greedy is not None else None,
            sampled_by.get(p.id, []) if sampled is not None else None,
            same_answer,
        )
        for p in problems
    ]
    return aggregate(results, k if sampled is not None else 0, settings)


# --------------------------------------------------------------------------- running a model


def evaluate_model(
    engine: Engine,
    task: Task,
    problems: Sequence[Problem],
    eval_cfg: EvalConfig,
    *,
    seed: int,
    max_new_tokens: int,
    out_path: str | Path | None = None,
    stop_at_final_answer: bool = True,
    progress: ProgressCallback | None = None,
) -> EvalResult:
    """Greedy accuracy and, when eval_cfg.maj_k > 0, maj@K and pass@K at eval_cfg.temperature.

    The samples are written beside `out_path` (`<stem>.greedy.jsonl`, `<stem>.sampled.jsonl`),
    so an interrupted evaluation resumes; the metrics with per-question details go to
    `out_path` as JSON. Without `out_path` the samples go to a temporary folder.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="irpo-eval-") as tmp:
        base = Path(out_path) if out_path is not None else Path(tmp) / "eval.json"
        sample_for_eval(
            engine,
            task,
            problems,
            eval_cfg,
            base,
            seed=seed,
            max_new_tokens=max_new_tokens,
            stop_at_final_answer=stop_at_final_answer,
            progress=progress,
        )
        return evaluate_files(
            task,
            problems,
            eval_cfg,
            base,
            eval_settings(
                eval_cfg,
                engine=getattr(engine, "name", None),
                seed=seed,
                max_new_tokens=max_new_tokens,
                stop_at_final_answer=stop_at_final_answer,
            ),
            write=out_path is not None,
        )


def eval_settings(
    eval_cfg: EvalConfig,
    *,
    engine: str | None,
    seed: int,
    max_new_tokens: int,
    stop_at_final_answer: bool,
) -> dict[str, Any]:
    """What an evaluation ran with (stored with its metrics)."""
    return {
        "engine": engine,
        "greedy": eval_cfg.greedy,
        "k": eval_cfg.maj_k,
        "temperature": eval_cfg.temperature,
        "top_p": eval_cfg.top_p,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "stop_at_final_answer": stop_at_final_answer,
    }


def eval_sample_paths(base: Path, shard: Shard | None = None) -> dict[str, Path]:
    """The greedy and sampled sample files of the evaluation `base` (or of one shard of it)."""
    from irpo.sampling.shards import shard_path

    paths = {name: base.with_name(f"{base.stem}.{name}.jsonl") for name in PASSES}
    return paths if shard is None else {k: shard_path(p, shard) for k, p in paths.items()}


PASSES = ("greedy", "sampled")


def sample_for_eval(
    engine: Engine,
    task: Task,
    problems: Sequence[Problem],
    eval_cfg: EvalConfig,
    base: Path,
    *,
    seed: int,
    max_new_tokens: int,
    stop_at_final_answer: bool = True,
    shard: Shard | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Draw an evaluation's samples (all, or one shard's) into `eval_sample_paths(base, shard)`:
    one greedy sample per question, and maj_k sampled ones when maj_k > 0. Resumable."""
    from irpo.sampling import SamplingParams, sample_problems

    common: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "stop_at_final_answer": stop_at_final_answer,
    }
    paths = eval_sample_paths(base, shard)
    kwargs: dict[str, Any] = {"shard": shard, "progress": progress, "stream": "eval"}
    if eval_cfg.greedy:
        params = SamplingParams(num_samples=1, temperature=0.0, **common)
        sample_problems(engine, task, problems, params, paths["greedy"], **kwargs)
    if eval_cfg.maj_k > 0:
        params = SamplingParams(
            num_samples=eval_cfg.maj_k,
            temperature=eval_cfg.temperature,
            top_p=eval_cfg.top_p,
            **common,
        )
        sample_problems(engine, task, problems, params, paths["sampled"], **kwargs)


def evaluate_files(
    task: Task,
    problems: Sequence[Problem],
    eval_cfg: EvalConfig,
    base: Path,
    settings: dict[str, Any],
    *,
    write: bool = True,
) -> EvalResult:
    """The metrics of the samples in `eval_sample_paths(base)`, written to `base` as JSON."""
    paths = eval_sample_paths(base)
    greedy = read_samples(paths["greedy"]) if eval_cfg.greedy else None
    sampled = read_samples(paths["sampled"]) if eval_cfg.maj_k > 0 else None
    result = evaluate_samples(
        problems, greedy, sampled, eval_cfg.maj_k, settings, same_answer=task.same_answer
    )
    add_modes(result, task, problems, greedy, sampled, eval_cfg.maj_k)
    if write:
        write_json(base, result.to_dict())
    log.info(
        "eval (%s): greedy %s, maj@%d %s, pass@%d %s, parse failures %s; strict greedy %s, "
        "flexible greedy %s",
        result.answer_mode,
        _pct(result.greedy_accuracy),
        result.k,
        _pct(result.maj_accuracy),
        result.k,
        _pct(result.pass_accuracy),
        _pct(result.parse_failure_rate),
        _pct(result.modes.get("strict", {}).get("greedy_accuracy")),
        _pct(result.modes.get("flexible", {}).get("greedy_accuracy")),
    )
    return result


def rescored(
    task: Task, problems: Sequence[Problem], samples: Sequence[Sample]
) -> dict[str, tuple[list[Sample], list[str | None]]]:
    """Per answer mode: the samples with that mode's verdicts, and the rule of each verdict."""
    from irpo.tasks.answers import ANSWER_MODES

    by_id = {p.id: p for p in problems}
    out: dict[str, tuple[list[Sample], list[str | None]]] = {m: ([], []) for m in ANSWER_MODES}
    for s in samples:
        problem = by_id.get(s.problem_id)
        if problem is None:
            continue
        for mode, verdict in task.score_modes(s.text, problem).items():
            out[mode][0].append(replace(s, answer=verdict.answer, correct=verdict.correct))
            out[mode][1].append(verdict.rule if verdict.answer is not None else None)
    return out


def add_modes(
    result: EvalResult,
    task: Task,
    problems: Sequence[Problem],
    greedy: Sequence[Sample] | None,
    sampled: Sequence[Sample] | None,
    k: int,
) -> None:
    """Fill `result.answer_mode`, `result.modes` and each question's `greedy_rule` / `by_mode`
    by re-scoring the samples under both answer modes (module docstring)."""
    greedy_modes = rescored(task, problems, greedy or ())
    sampled_modes = rescored(task, problems, sampled or ())
    result.answer_mode = task.answer_mode
    per_mode: dict[str, dict[str, QuestionResult]] = {}
    rule_of: dict[str, dict[str, str | None]] = {}
    for mode in greedy_modes:
        g_samples, g_rules = greedy_modes[mode]
        s_samples, s_rules = sampled_modes[mode]
        mode_result = evaluate_samples(
            problems,
            g_samples if greedy is not None else None,
            s_samples if sampled is not None else None,
            k,
            same_answer=task.same_answer,
        )
        rules = Counter(rule or "unparsed" for rule in [*g_rules, *s_rules])
        result.modes[mode] = {
            "greedy_accuracy": mode_result.greedy_accuracy,
            "maj_accuracy": mode_result.maj_accuracy,
            "pass_accuracy": mode_result.pass_accuracy,
            "parse_failure_rate": mode_result.parse_failure_rate,
            "rules": dict(rules.most_common()),
        }
        per_mode[mode] = {q.problem_id: q for q in mode_result.per_question}
        rule_of[mode] = {s.problem_id: r for s, r in zip(g_samples, g_rules, strict=True)}
    keys = ("greedy_answer", "greedy_correct", "maj_correct", "num_correct", "num_unparseable")
    result.per_question = [
        replace(
            q,
            greedy_rule=rule_of[task.answer_mode].get(q.problem_id),
            by_mode={
                mode: {
                    **{key: getattr(per_mode[mode][q.problem_id], key) for key in keys},
                    "greedy_rule": rule_of[mode].get(q.problem_id),
                }
                for mode in per_mode
                if q.problem_id in per_mode[mode]
            },
        )
        for q in result.per_question
    ]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"
