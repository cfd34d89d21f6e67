"""The generated `arith` task: format, determinism, disjoint splits, knobs, scoring."""

from __future__ import annotations

import re

import pytest

from irpo.errors import IrpoError
from irpo.records import Problem, Verdict
from irpo.tasks import get_task
from irpo.tasks.arith import ArithProblem, ArithTask, split_of

STEP = re.compile(r"^(-?\d+)([-+*])(\d+)=(-?\d+)\.$")


def test_problem_text_and_solution_by_hand() -> None:
    p = ArithProblem(5, (("+", 3), ("-", 1), ("*", 4)))
    assert p.question() == "Start with 5. Add 3. Subtract 1. Multiply by 4. What is the result?"
    assert p.solution() == "5+3=8. 8-1=7. 7*4=28. Final answer: 28"
    assert p.answer() == 28


def test_prompt_and_gold_completion() -> None:
    task = ArithTask()
    problem = task.load(None, "test", limit=1)[0]
    assert task.prompt(problem) == f"Question: {problem.question}\nSolution: "
    gold = task.gold_completion(problem)
    assert gold == problem.solution
    assert gold is not None and gold.endswith(f"Final answer: {problem.answer}")
    assert task.score(gold, problem).correct


def test_default_sizes_and_limits() -> None:
    task = ArithTask()
    assert len(task.load(None, "train")) == 5000
    assert len(task.load("generated", "test")) == 500
    problems, stats = task.load_with_stats(None, "validation", limit=7)
    assert len(problems) == 7
    assert (stats.source, stats.rows, stats.loaded, stats.skipped) == ("generated", 7, 7, 0)
    assert len(ArithTask(size=30).load(None, "train")) == 30


def test_deterministic_and_limit_is_a_prefix() -> None:
    a = ArithTask(seed=1).load(None, "train", limit=50)
    b = ArithTask(seed=1).load(None, "train", limit=20)
    assert a[:20] == b
    assert [p.question for p in ArithTask(seed=2).load(None, "train", limit=20)] != [
        p.question for p in b
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_are_disjoint_by_construction(seed: int) -> None:
    task = ArithTask(seed=seed)
    train = {p.question for p in task.load(None, "train", limit=2000)}
    test = {p.question for p in task.load(None, "test")}
    dev = {p.question for p in task.load(None, "dev")}
    assert len(test) == 500 and len(dev) == 500 and len(train) == 2000  # no duplicates
    assert not train & test and not train & dev and not test & dev
    assert {split_of(q) for q in test} == {"test"}
    assert {split_of(q) for q in train} == {"train"}
    # Another seed's training set never contains this seed's test problems either.
    other = {p.question for p in ArithTask(seed=seed + 10).load(None, "train", limit=2000)}
    assert not other & test


def _check_solution(problem: Problem, allow_negative: bool) -> list[str]:
    lines = problem.solution.split(" Final answer: ") if problem.solution else []
    steps = lines[0].split(" ")
    value = int(problem.question.split(".")[0].removeprefix("Start with "))
    ops = []
    for step in steps:
        m = STEP.match(step)
        assert m, step
        a, op, b, result = int(m[1]), m[2], int(m[3]), int(m[4])
        assert a == value
        assert result == {"+": a + b, "-": a - b, "*": a * b}[op]
        assert allow_negative or result >= 0
        value = result
        ops.append(op)
    assert lines[1] == str(value) == problem.answer
    return ops


def test_default_knobs_respected() -> None:
    problems = ArithTask().load(None, "train", limit=500)
    counts = set()
    for p in problems:
        ops = _check_solution(p, allow_negative=False)
        counts.add(len(ops))
        assert set(ops) <= {"+", "-"}
        numbers = [int(n) for n in re.findall(r"\d+", p.question)]
        assert all(1 <= n <= 20 for n in numbers)
    assert counts == {2, 3}


def test_custom_knobs() -> None:
    task = get_task(
        "arith",
        min_steps=4,
        max_steps=4,
        max_number=9,
        operations=["*", "-"],
        allow_negative=True,
        seed=5,
    )
    problems = task.load(None, "test", limit=200)
    negatives = 0
    for p in problems:
        ops = _check_solution(p, allow_negative=True)
        assert len(ops) == 4 and set(ops) <= {"*", "-"}
        negatives += int(p.answer) < 0
        assert "Multiply by" in p.question or "Subtract" in p.question
    assert negatives > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_steps": 3, "max_steps": 2}, "min_steps"),
        ({"operations": ["/"]}, "operations"),
        ({"operations": []}, "operations"),
        ({"max_number": -1}, "min_number"),
        ({"size": 0}, "size"),
        ({"colour": "red"}, "unknown option(s) colour"),
    ],
)
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(IrpoError, match=re.escape(message)):
        get_task("arith", **options)


def test_bad_source_and_split() -> None:
    task = ArithTask()
    with pytest.raises(IrpoError, match="generates its problems"):
        task.load("data.jsonl", "train")
    with pytest.raises(IrpoError, match="unknown split 'holdout'"):
        task.load(None, "holdout")


def test_too_small_space_is_an_error() -> None:
    task = ArithTask(min_steps=1, max_steps=1, max_number=2, operations=["+"])
    with pytest.raises(IrpoError, match="distinct test problems"):
        task.load(None, "test", limit=50)


PROBLEM = Problem(
    id="p", question="Start with 5. Add 3. Subtract 1. What is the result?", answer="7"
)


@pytest.mark.parametrize(
    ("completion", "answer", "correct"),
    [
        ("5+3=8. 8-1=7. Final answer: 7", "7", True),
        ("5+3=8. 8-1=7. Final answer: 7\nQuestion: Start with 2.", "7", True),
        ("5+3=8. 8-1=7. Final answer: 7. Final answer: 8", "8", False),  # the last one counts
        ("5+3=8. 8-1=6. Final answer: 6", "6", False),
        ("5+3=8. 8-1=7. Final answer: 17", "17", False),
        ("5+3=8. 8-1=7. Final answer: -7", "-7", False),
        ("5+3=8. 8-1=7. Final answer: 7.0", "7", True),
        ("5+3=8. 8-1=7. Final answer:", None, False),  # clipped
        ("5+3=8. 8-1=7. Final answ", None, False),
        ("5+3=8. 8-1=7.", None, False),
        ("", None, False),
    ],
)
def test_score(completion: str, answer: str | None, correct: bool) -> None:
    verdict = ArithTask().score(completion, PROBLEM)
    assert (verdict.answer, verdict.correct) == (answer, correct)


def test_answer_mode_option() -> None:
    assert ArithTask().score("5+3=8. 8-1=7. So \\boxed{7}", PROBLEM).correct
    strict = ArithTask(answer_mode="strict")
    assert strict.score("5+3=8. 8-1=7. So \\boxed{7}", PROBLEM).answer is None
    assert strict.score("Final answer: 7", PROBLEM).correct


def test_check_steps_scores_training_problems_by_their_equations_too() -> None:
    solution = "5+3=8. 8-1=7. Final answer: 7"
    train = Problem(
        id="t", question=PROBLEM.question, answer="7", solution=solution, meta={"split": "train"}
    )
    test = Problem(
        id="e", question=PROBLEM.question, answer="7", solution=solution, meta={"split": "test"}
    )
    task = ArithTask(check_steps="train")
    lucky = "5+3=9. 9-2=7. Final answer: 7"  # the right answer by wrong steps
    assert task.score(solution, train) == Verdict("7", True)
    assert task.score("5 + 3 = 8. 8 - 1 = 7. Final answer: 7", train) == Verdict("7", True)
    assert task.score(lucky, train) == Verdict("7", False)
    assert task.score("8-1=7. Final answer: 7", train) == Verdict("7", False)  # a step missing
    assert task.score(lucky, test) == Verdict("7", True)  # held-out: the final answer alone
    assert ArithTask().score(lucky, train) == Verdict("7", True)
    with pytest.raises(IrpoError, match="check_steps must be false or 'train'"):
        ArithTask(check_steps="all")
