"""Evaluation: majority vote (grouping, tie-break, unparseable votes), pass@K, the aggregate
metrics, and the JSON written by evaluate_model."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from irpo.config import EvalConfig
from irpo.evaluate import (
    QuestionResult,
    aggregate,
    evaluate_model,
    evaluate_samples,
    majority_vote,
    score_question,
)
from irpo.records import Problem, Sample
from irpo.sampling import Completion, DecodeParams, Progress, PromptRequest
from irpo.tasks import get_task


def _s(index: int, answer: str | None, correct: bool = False, pid: str = "q") -> Sample:
    return Sample(pid, index, f"text {index}", [index], "eos", answer, correct)


def _scored(task: Any, problem: Problem, texts: Sequence[str]) -> list[Sample]:
    """Sample i is texts[i], with the task's verdict."""
    verdicts = [task.score(text, problem) for text in texts]
    return [
        Sample(problem.id, i, text, [i], "eos", v.answer, v.correct)
        for i, (text, v) in enumerate(zip(texts, verdicts, strict=True))
    ]


def test_majority_vote_tie_goes_to_the_answer_voted_first() -> None:
    # "2" and "1" have two votes each; "2" was voted first (index 1), so it wins
    samples = [_s(0, None), _s(1, "2"), _s(2, "1", True), _s(3, "2"), _s(4, "1", True)]
    winner = majority_vote(samples)
    assert winner is not None
    assert (winner.index, winner.answer) == (1, "2")
    assert majority_vote(samples[::-1]) == winner  # order of the list does not matter


def test_majority_vote_ignores_unparseable_votes() -> None:
    # three unparseable samples do not outvote a single answer
    samples = [_s(0, None), _s(1, None), _s(2, None), _s(3, "7", True)]
    winner = majority_vote(samples)
    assert winner is not None
    assert winner.index == 3
    assert majority_vote([_s(0, None), _s(1, None)]) is None
    assert majority_vote([]) is None


def test_votes_group_by_the_tasks_normalised_answer() -> None:
    """GSM8K normalises "1,080", "$1080.00" and "**1080**" to "1080": three votes against two
    for "72", though "72" appears first."""
    task = get_task("gsm8k")
    problem = Problem(id="q", question="?", answer="1080")
    texts = [
        "Final answer: 72",
        "Final answer: 72",
        "Final answer: 1,080",
        "Final answer: $1080.00",
        "Final answer: **1080**",
        "no answer here",
    ]
    samples = _scored(task, problem, texts)
    result = score_question(problem, None, samples)
    assert result.maj_answer == "1080"
    assert result.maj_votes == 3
    assert result.maj_correct is True
    assert result.answers == {"72": 2, "1080": 3}
    assert result.num_unparseable == 1
    assert result.num_correct == 3
    assert result.pass_correct is True


def test_pass_at_k_and_a_question_without_answers() -> None:
    problem = Problem(id="q", question="?", answer="1")
    wrong_majority = [_s(0, "2"), _s(1, "2"), _s(2, "1", True)]
    r = score_question(problem, _s(0, "2"), wrong_majority)
    assert (r.greedy_answer, r.greedy_correct) == ("2", False)
    assert (r.maj_answer, r.maj_correct, r.pass_correct) == ("2", False, True)
    r = score_question(problem, None, [_s(0, None), _s(1, None)])
    assert (r.maj_answer, r.maj_correct, r.maj_votes, r.pass_correct) == (None, False, 0, False)
    assert r.greedy_correct is None  # greedy not evaluated


def test_aggregate_metrics_by_hand() -> None:
    """4 questions, K = 2. Greedy: 2 of 4 correct, 1 unparseable. Majority: 1 of 4 correct.
    Pass: 3 of 4. Sampled parse failures: 3 of 8; all parse failures: (1 + 3) / (4 + 8)."""
    results = [
        QuestionResult("a", "1", "1", True, "1", True, 2, True, 2, 0, {"1": 2}),
        QuestionResult("b", "1", "1", True, "2", False, 1, True, 1, 0, {"2": 1, "1": 1}),
        QuestionResult("c", "1", None, False, "3", False, 1, True, 1, 1, {"3": 1}),
        QuestionResult("d", "1", "5", False, None, False, 0, False, 0, 2, {}),
    ]
    r = aggregate(results, k=2)
    assert (r.num_problems, r.k) == (4, 2)
    assert r.greedy_accuracy == 0.5
    assert r.maj_accuracy == 0.25
    assert r.pass_accuracy == 0.75
    assert r.greedy_parse_failure_rate == 0.25
    assert r.sampled_parse_failure_rate == 3 / 8
    assert r.parse_failure_rate == 4 / 12


def test_greedy_only() -> None:
    problems = [Problem(id=f"q{i}", question="?", answer="1") for i in range(3)]
    greedy = [_s(0, "1", True, "q0"), _s(0, None, False, "q1"), _s(0, "2", False, "q2")]
    r = evaluate_samples(problems, greedy, None, k=4)
    assert r.k == 0
    assert (r.greedy_accuracy, r.maj_accuracy, r.pass_accuracy) == (1 / 3, None, None)
    assert r.parse_failure_rate == 1 / 3
    assert r.per_question[1].maj_answer is None


class VoteEngine:
    """Greedy (temperature 0) answers GREEDY[q]; sampled completions answer VOTES[q][j]."""

    name = "votes"
    GREEDY: ClassVar[dict[str, str | None]] = {"a": "4", "b": "x", "c": None}
    VOTES: ClassVar[dict[str, list[str | None]]] = {
        "a": ["4", "5", "5"],
        "b": ["7", None, "7"],
        "c": [None, "9", "8"],
    }

    def __init__(self) -> None:
        self.calls = 0

    def encode_prompt(self, prompt: str) -> list[int]:
        return [1]

    def generate(
        self,
        requests: Sequence[PromptRequest],
        params: DecodeParams,
        progress: Progress | None = None,
        on_step: Any = None,
    ) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        self.calls += 1
        for req in requests:
            if params.temperature == 0:
                answers = [self.GREEDY[req.key]]
            else:
                answers = self.VOTES[req.key][: req.num_samples]
            comps = [
                Completion(j, [j], f"Final answer: {a}\n" if a else "none", "stop")
                for j, a in enumerate(answers)
            ]
            yield req, comps


def test_evaluate_model_writes_metrics_and_details(tmp_path: Path) -> None:
    problems = [
        Problem(id="a", question="2+2", answer="5"),
        Problem(id="b", question="3+4", answer="7"),
        Problem(id="c", question="4+4", answer="8"),
    ]
    engine = VoteEngine()
    out = tmp_path / "eval" / "M1.json"
    cfg = EvalConfig(maj_k=3, temperature=0.8)
    result = evaluate_model(
        engine, get_task("gsm8k"), problems, cfg, seed=5, max_new_tokens=512, out_path=out
    )
    data = json.loads(out.read_text())
    assert data == result.to_dict()
    # greedy: a "4" wrong, b "x" unparseable, c no answer -> 0 of 3; 2 unparseable
    # maj: a "5" (2 votes) right; b "7" right; c tie 9/8 -> "9" (voted first) wrong -> 2 of 3
    # pass: a, b, c (c has "8") -> 3 of 3; sampled unparseable: b 1, c 1 -> 2 of 9
    expected = {
        "num_problems": 3,
        "k": 3,
        "greedy_accuracy": 0.0,
        "maj_accuracy": 2 / 3,
        "pass_accuracy": 1.0,
        "parse_failure_rate": 4 / 12,
        "greedy_parse_failure_rate": 2 / 3,
        "sampled_parse_failure_rate": 2 / 9,
    }
    assert {k: data[k] for k in expected} == expected
    assert data["settings"]["k"] == 3
    assert data["settings"]["temperature"] == 0.8
    assert data["settings"]["max_new_tokens"] == 512
    assert data["per_question"][2] == {
        "problem_id": "c",
        "gold": "8",
        "greedy_answer": None,
        "greedy_correct": False,
        "maj_answer": "9",
        "maj_correct": False,
        "maj_votes": 1,
        "pass_correct": True,
        "num_correct": 1,
        "num_unparseable": 1,
        "answers": {"9": 1, "8": 1},
        "greedy_rule": None,
        "by_mode": {
            mode: {
                "greedy_answer": None,
                "greedy_correct": False,
                "maj_correct": False,
                "num_correct": 1,
                "num_unparseable": 1,
                "greedy_rule": None,
            }
            for mode in ("strict", "flexible")
        },
    }
    assert (out.parent / "M1.greedy.jsonl").exists()
    assert (out.parent / "M1.sampled.jsonl").exists()
    # a second evaluation resumes from the stored samples: nothing is generated again
    again = VoteEngine()
    assert (
        evaluate_model(
            again, get_task("gsm8k"), problems, cfg, seed=5, max_new_tokens=512, out_path=out
        )
        == result
    )
    assert again.calls == 2  # called, but with no request left
    with pytest.raises(Exception, match="other settings"):
        evaluate_model(
            again,
            get_task("gsm8k"),
            problems,
            EvalConfig(maj_k=3, temperature=1.0),
            seed=5,
            max_new_tokens=512,
            out_path=out,
        )


def _same_fraction(a: str, b: str) -> bool:
    from fractions import Fraction

    return Fraction(a) == Fraction(b)


def test_votes_group_by_the_tasks_equivalence() -> None:
    # "1/2" and "0.5" are one answer under the equivalence: 2 votes each for 1/2 and 1/3, and
    # 1/2 was voted first. As strings, "1/3" has the only two votes.
    samples = [_s(0, "1/2", True), _s(1, "1/3"), _s(2, "0.5", True), _s(3, "1/3")]
    by_string = majority_vote(samples)
    by_value = majority_vote(samples, _same_fraction)
    assert by_string is not None and by_value is not None
    assert (by_string.index, by_string.answer) == (1, "1/3")
    assert (by_value.index, by_value.answer) == (0, "1/2")

    problem = Problem(id="q", question="?", answer="1/2")
    r = score_question(problem, None, samples, _same_fraction)
    assert (r.maj_answer, r.maj_correct, r.maj_votes) == ("1/2", True, 2)
    assert r.answers == {"1/2": 2, "1/3": 2}
    r = score_question(problem, None, samples)
    assert (r.maj_answer, r.maj_correct, r.maj_votes) == ("1/3", False, 2)
    assert r.answers == {"1/2": 1, "1/3": 2, "0.5": 1}

    # evaluate_samples passes the equivalence on: maj@4 is 1.0 with it, 0.0 without
    assert (
        evaluate_samples([problem], None, samples, 4, same_answer=_same_fraction).maj_accuracy
        == 1.0
    )
    assert evaluate_samples([problem], None, samples, 4).maj_accuracy == 0.0


def test_math_votes_group_by_math_verify_equivalence() -> None:
    """MATH's majority vote counts "0.5", "\\frac{1}{2}" and "\\dfrac12" as one answer."""
    task = get_task("math")
    try:
        problem = Problem(id="q", question="?", answer="\\frac{1}{2}")
        texts = [
            "Final answer: $\\frac{1}{3}$",
            "Final answer: $0.5$",
            "Final answer: $\\frac{1}{3}$",
            "Final answer: $\\dfrac12$",
            "Final answer: $\\frac{1}{2}$",
        ]
        samples = _scored(task, problem, texts)
        r = score_question(problem, None, samples, task.same_answer)
        assert (r.maj_answer, r.maj_correct, r.maj_votes) == ("0.5", True, 3)
        assert r.answers == {"\\frac{1}{3}": 2, "0.5": 3}
        assert task.same_answer("0.5", "\\frac{1}{2}")
        assert not task.same_answer("0.5", "\\frac{1}{3}")
        # the base rule for other tasks: equal strings
        assert get_task("gsm8k").same_answer("3", "3") and not get_task("gsm8k").same_answer(
            "3", "3.0"
        )
    finally:
        task.judge.close()  # type: ignore[attr-defined]


def test_evaluate_files_reports_both_answer_modes(tmp_path: Path) -> None:
    from irpo.evaluate import eval_sample_paths, evaluate_files
    from irpo.records import write_jsonl

    task = get_task("gsm8k")
    problems = [Problem(f"q{i}", "q", "18") for i in range(4)]
    texts = ["Final answer: 18", "#### 18", "The answer is: 17", "no answer"]
    greedy = [s for p, t in zip(problems, texts, strict=True) for s in _scored(task, p, [t])]
    sampled = [
        s
        for p in problems
        for s in _scored(task, p, ["Final answer: 18", "\\boxed{18}", "#### 17"])
    ]
    base = tmp_path / "eval.json"
    paths = eval_sample_paths(base)
    write_jsonl(paths["greedy"], (s.to_dict() for s in greedy))
    write_jsonl(paths["sampled"], (s.to_dict() for s in sampled))
    result = evaluate_files(task, problems, EvalConfig(maj_k=3), base, {})
    assert (result.answer_mode, result.greedy_accuracy) == ("flexible", 0.5)
    assert result.modes["strict"] == {
        "greedy_accuracy": 0.25,
        "maj_accuracy": 1.0,  # the marker's 18 is the only vote
        "pass_accuracy": 1.0,
        "parse_failure_rate": (3 + 8) / 16,
        "rules": {"unparsed": 11, "final_answer": 5},
    }
    assert result.modes["flexible"]["greedy_accuracy"] == 0.5
    assert result.modes["flexible"]["parse_failure_rate"] == 1 / 16
    assert result.modes["flexible"]["rules"] == {
        "final_answer": 5,
        "hashes": 5,
        "boxed": 4,
        "answer_is": 1,
        "unparsed": 1,
    }
    assert [q.greedy_rule for q in result.per_question] == [
        "final_answer",
        "hashes",
        "answer_is",
        None,
    ]
    second = json.loads(base.read_text())["per_question"][1]
    assert second["by_mode"] == {
        "strict": {
            "greedy_answer": None,
            "greedy_correct": False,
            "maj_correct": True,
            "num_correct": 1,
            "num_unparseable": 2,
            "greedy_rule": None,
        },
        "flexible": {
            "greedy_answer": "18",
            "greedy_correct": True,
            "maj_correct": True,
            "num_correct": 2,
            "num_unparseable": 0,
            "greedy_rule": "hashes",
        },
    }
