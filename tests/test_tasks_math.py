"""math: gold extraction, the 4-shot prompt, Math-Verify judging of real-looking outputs, MATH500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from irpo.errors import IrpoError
from irpo.records import Problem
from irpo.tasks import get_task
from irpo.tasks.competition_math import INSTRUCTION, MathTask, balanced, fewshot_examples
from irpo.tasks.math_judge import MathJudge, canonical, for_math_verify


@pytest.fixture(scope="module")
def task() -> Iterator[MathTask]:
    t = MathTask()
    yield t
    t.judge.close()


def test_fewshot_examples_are_the_documented_ones() -> None:
    examples = fewshot_examples()
    assert [e["unique_id"] for e in examples] == [
        "train/algebra/79.json",
        "train/counting_and_probability/239.json",
        "train/number_theory/723.json",
        "train/prealgebra/2026.json",
    ]
    assert [e["answer"] for e in examples] == ["-1-16i", "15", "3", "25"]


def test_prompt(task: MathTask) -> None:
    problem = Problem(id="p", question="What is $1+1$?", answer="2")
    prompt = task.prompt(problem)
    assert prompt.startswith(INSTRUCTION + "\n\nQuestion: Express $(5-4i)-2(3+6i)$")
    assert prompt.endswith(
        "\\boxed{25}.\\]\nFinal answer: $25$\n\nQuestion: What is $1+1$?\nSolution:"
    )
    assert prompt.count("\nFinal answer: ") == 4
    assert INSTRUCTION == (
        "Your task is to answer the last question below. Give step by step reasoning before you "
        "answer, and when you're ready to answer, please wrap your answer in \\boxed, and conclude "
        'using the format "Final answer: ..."'
    )


def _rows(tmp_path: Path, rows: list[dict[str, object]]) -> str:
    path = tmp_path / "MATH_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path)


def test_gold_from_last_box_with_nested_braces(tmp_path: Path, task: MathTask) -> None:
    source = _rows(
        tmp_path,
        [
            {
                "problem": "p1",
                "solution": "First $\\boxed{1}$, then $\\boxed{\\frac{\\sqrt{3}}{2}}$.",
                "unique_id": "test/a/1.json",
                "level": "Level 2",
                "type": "Algebra",
            },
            {
                "problem": "p2",
                "solution": "So it is \\fbox{$x^{2}$}.",
                "unique_id": "test/a/2.json",
            },
            {"problem": "p3", "solution": "$\\boxed{3}$", "answer": "3"},
        ],
    )
    p1, p2, p3 = task.load(source, "test")
    assert (p1.id, p1.answer, p1.meta) == (
        "test/a/1.json",
        "\\frac{\\sqrt{3}}{2}",
        {"level": "Level 2", "type": "Algebra", "boxed": "\\frac{\\sqrt{3}}{2}"},
    )
    assert p2.answer == "$x^{2}$"
    assert (p3.id, p3.answer) == ("test/2", "3")
    assert task.gold_completion(p1) == (
        "First $\\boxed{1}$, then $\\boxed{\\frac{\\sqrt{3}}{2}}$.\n"
        "Final answer: $\\frac{\\sqrt{3}}{2}$"
    )
    assert [task.audit_gold(p) for p in (p1, p2, p3)] == [[], [], []]


def test_bad_rows(tmp_path: Path, task: MathTask) -> None:
    source = _rows(tmp_path, [{"problem": "p", "solution": "no box here"}])
    with pytest.raises(IrpoError, match=r"MATH_test\.jsonl:1: the solution has no \\boxed"):
        task.load(source, "test")
    source = _rows(tmp_path, [{"problem": "p", "solution": "there are $\\boxed{}$ primes"}])
    with pytest.raises(
        IrpoError, match=r"MATH_test\.jsonl:1: the solution's last \\boxed\{\} is empty"
    ):
        task.load(source, "test")
    source = _rows(tmp_path, [{"solution": "\\boxed{1}"}])
    with pytest.raises(IrpoError, match=r"MATH_test\.jsonl:1: no 'question' field"):
        task.load(source, "test")


def test_audit_catches_answer_field_disagreeing_with_box(task: MathTask) -> None:
    problem = Problem(
        id="p",
        question="q",
        answer="\\frac{1}{3}",
        solution="$\\boxed{0.5}$",
        meta={"boxed": "0.5"},
    )
    assert task.audit_gold(problem) == [
        "answer field '\\\\frac{1}{3}' differs from the boxed '0.5'"
    ]


SEPARATED = Problem(id="separated", question="q", answer="\\frac{12}{5,\\!525}")
HALF = Problem(id="half", question="q", answer="\\frac{1}{2}")
POLAR = Problem(id="polar", question="q", answer="\\left( 3, \\frac{\\pi}{2} \\right)")
COMPLEX = Problem(id="complex", question="q", answer="8+4i")
NAME = Problem(id="name", question="q", answer="\\text{Devon}")
INTERVAL = Problem(id="interval", question="q", answer="[2,5)")
ROOT = Problem(id="root", question="q", answer="2\\sqrt{2}")
TEN = Problem(id="ten", question="q", answer="10")
BARE = Problem(id="bare", question="q", answer="\\frac \\pi4 + 2 - \\sqrt2")  # test/geometry/1107
SUM = Problem(id="sum", question="q", answer="a + b + c")
POLY = Problem(id="poly", question="q", answer="x^2+2x+1")


@pytest.mark.parametrize(
    ("completion", "problem", "answer", "correct"),
    [
        ("Final answer: $\\frac{1}{2}$", HALF, "\\frac{1}{2}", True),
        ("Final answer: $\\dfrac{1}{2}$", HALF, "\\dfrac{1}{2}", True),
        ("Final answer: 1/2", HALF, "1/2", True),
        ("Final answer: 0.5", HALF, "0.5", True),
        ("Final answer: $\\boxed{\\frac12}$", HALF, "\\frac12", True),
        ("So $r = \\boxed{\\frac{1}{2}}$.", HALF, "\\frac{1}{2}", True),  # fall-back: box
        ("Final answer: 2/4", HALF, "2/4", True),
        ("Final answer: $\\frac{1}{3}$", HALF, "\\frac{1}{3}", False),
        ("Final answer: 0.51", HALF, "0.51", False),
        ("Final answer: $-\\frac{1}{2}$", HALF, "-\\frac{1}{2}", False),
        ("\\boxed{\\frac{1}{2}} Final answer: $\\frac{2}{1}$", HALF, "\\frac{2}{1}", False),
        ("Final answer: $\\frac{1}{2", HALF, None, False),  # clipped: unbalanced braces
        ("Final answer: $\\frac{12}{5525}$", SEPARATED, "\\frac{12}{5525}", True),  # MATH test
        ("Final answer: $\\frac{12}{5,\\!526}$", SEPARATED, "\\frac{12}{5,\\!526}", False),
        ("Final answer: $(3, \\frac{\\pi}{2})$", POLAR, "(3, \\frac{\\pi}{2})", True),
        ("Final answer: $(3, \\pi/2)$", POLAR, "(3, \\pi/2)", True),
        ("Final answer: $(3, \\frac{\\pi}{3})$", POLAR, "(3, \\frac{\\pi}{3})", False),
        ("Final answer: $(\\frac{\\pi}{2}, 3)$", POLAR, "(\\frac{\\pi}{2}, 3)", False),
        ("Final answer: $4i+8$", COMPLEX, "4i+8", True),
        ("Final answer: $8-4i$", COMPLEX, "8-4i", False),
        ("Final answer: 8", COMPLEX, "8", False),
        ("Final answer: Devon", NAME, "Devon", True),
        ("Final answer: $\\text{Devon}$", NAME, "\\text{Devon}", True),
        ("Final answer: Evan", NAME, "Evan", False),
        ("Final answer: $[2,5)$", INTERVAL, "[2,5)", True),
        ("Final answer: $[2,5]$", INTERVAL, "[2,5]", False),
        ("Final answer: $(2,5)$", INTERVAL, "(2,5)", False),
        ("Final answer: $\\sqrt{8}$", ROOT, "\\sqrt{8}", True),
        ("Final answer: $2\\sqrt{3}$", ROOT, "2\\sqrt{3}", False),
        ("Final answer: 2.828", ROOT, "2.828", False),
        ("Final answer: 10 vertical asymptotes", TEN, "10 vertical asymptotes", True),
        ("Final answer: $10^\\circ$", TEN, "10^\\circ", True),
        ("Final answer: 100", TEN, "100", False),
        ("Final answer: 1 0", TEN, "1 0", False),
        ("Final answer: ten", TEN, "ten", False),
        ("Final answer: $(x+1)^2$", POLY, "(x+1)^2", True),
        ("Final answer: $x^2+2x-1$", POLY, "x^2+2x-1", False),
        ("Final answer: $y^2+2y+1$", POLY, "y^2+2y+1", False),
        (
            "Final answer: $\\frac{\\pi}{4} + 2 - \\sqrt{2}$",
            BARE,
            "\\frac{\\pi}{4} + 2 - \\sqrt{2}",
            True,
        ),
        ("Final answer: 2", BARE, "2", False),  # Math-Verify read the raw gold as 2
        ("Final answer: $c+b+a$", SUM, "c+b+a", True),
        ("Final answer: $a + b$", SUM, "a + b", False),
        ("The answer is 10.", TEN, "10", True),  # "the answer is" fall-back (MetaMath style)
        ("The answer is ten.", TEN, None, False),  # prose after "the answer is" is no value
        ("Final answer:", TEN, None, False),
    ],
)
def test_score(
    task: MathTask, completion: str, problem: Problem, answer: str | None, correct: bool
) -> None:
    verdict = task.score(completion, problem)
    assert (verdict.answer, verdict.correct) == (answer, correct)


def test_helpers() -> None:
    assert canonical("\\left( 3, \\dfrac{\\pi}{2} \\right).") == "(3,\\frac{\\pi}{2})"
    assert canonical("1 0") == "1 0"
    assert for_math_verify("\\frac{1}{2}") == "\\boxed{\\frac{1}{2}}"
    assert for_math_verify("10 vertical asymptotes") == "10 vertical asymptotes"
    assert for_math_verify("\\text{Devon}") == "\\boxed{\\text{Devon}}"
    assert for_math_verify("\\frac{12}{5,\\!525}") == "\\boxed{\\frac{12}{5525}}"
    assert for_math_verify("10{,}000{,}000") == "\\boxed{10000000}"
    assert (
        for_math_verify("\\frac{7}{5} + \\frac{1}{5} i.") == "\\boxed{\\frac{7}{5}+\\frac{1}{5} i}"
    )
    # MATH train golds that Math-Verify misread before these rewrites
    assert for_math_verify("a + b + c") == "\\boxed{a+b+c}"
    assert for_math_verify("LQSX") == "\\boxed{LQSX}"
    assert for_math_verify("\\text{(E)},") == "\\boxed{\\text{(E)}}"
    matrix = "\\begin{pmatrix}6\\\\3\\end{pmatrix}"
    assert for_math_verify(matrix) == f"\\boxed{{{matrix}}}"
    assert for_math_verify("\\frac \\pi4 + 2 - \\sqrt2") == "\\boxed{\\frac{\\pi}{4}+2-\\sqrt2}"
    assert balanced("\\{1\\}") and balanced("\\frac{1}{2}")
    assert not balanced("\\frac{1}{2") and not balanced("}{")


def test_judge_works_from_other_threads_and_recovers_after_timeout() -> None:
    judge = MathJudge(timeout=5.0)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(judge.same_answer("8+4i", "4i+8")))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True, True, True]
    judge.timeout = 1e-6  # nothing finishes in a microsecond: the worker is killed
    assert judge.equivalent("\\boxed{1}", "\\boxed{1}") is False
    assert judge.timeouts == 1
    judge.timeout = 5.0  # a fresh worker starts for the next request
    assert judge.equivalent("\\boxed{1}", "\\boxed{1}") is True
    judge.close()


def test_in_thread_mode_without_limit() -> None:
    task = get_task("math", verify_timeout=None)
    assert task.score("Final answer: 0.5", HALF).correct
    with pytest.raises(IrpoError, match="verify_timeout must be positive"):
        get_task("math", verify_timeout=0)


def test_shared_data_math500_gold(shared_data: Path, task: MathTask) -> None:
    problems = task.load(str(shared_data / "math500" / "test.jsonl"), "test")
    assert len(problems) == 500
    failures = {p.id: task.audit_gold(p) for p in problems}
    assert {k: v for k, v in failures.items() if v} == {}
    assert problems[0].id == "test/precalculus/807.json"
    assert problems[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_shared_data_math_folder_splits(shared_data: Path, task: MathTask) -> None:
    test = task.load(str(shared_data / "math"), "test", limit=5)
    train = task.load(str(shared_data / "math"), "train", limit=5)
    assert [p.id for p in test][:1] == ["test/algebra/1.json"]
    assert test[0].answer == "2"
    assert [p.id for p in train][:2] == ["train/algebra/0.json", "train/algebra/3.json"]
    assert [p.answer for p in train][:2] == ["0", "8+4i"]
