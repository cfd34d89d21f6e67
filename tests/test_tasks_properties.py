"""Property tests: no completion string makes any task's `score` raise, and verdicts are sane."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irpo.records import Problem
from irpo.tasks import get_task
from irpo.tasks.base import Task

PROBLEMS = {
    "arith": Problem(id="a", question="Start with 5. Add 3. What is the result?", answer="8"),
    "gsm8k": Problem(id="g", question="q", answer="1080"),
    "arc_challenge": Problem(
        id="c", question="q", answer="B", choices=(("A", "x"), ("B", "y"), ("C", "z"))
    ),
    "math": Problem(id="m", question="q", answer="\\frac{\\sqrt{3}}{2}"),
    "custom": Problem(id="u", question="q", answer="-3.5"),
}

# Text built from the pieces that extraction looks for, so that the interesting paths are hit.
PIECES = st.sampled_from(
    [
        "Final answer:",
        "**Final answer:**",
        "final answer is",
        "the answer is",
        "\\boxed{",
        "\\fbox{",
        "{",
        "}",
        "$",
        "$$",
        "\\(",
        "\\)",
        "\\frac{1}{2}",
        "1,080",
        "-",
        "\u2212",
        "=",
        "/",
        "0",
        "3.50",
        "(B)",
        "B",
        "\n",
        " ",
        ".",
        "%",
        "\\text{",
        "\\sqrt{3}",
        "^",
        "x",
        "####",
        "ANSWER:",
        "The correct answer is",
        "\\text{ and }",
        " or ",
        "\\ldots",
        " million",
        "2 1/4",
        "12 500",
        '"',
        "Question:",
        "|PQ| = ",
    ]
)
COMPLETIONS = st.one_of(st.text(max_size=200), st.lists(PIECES, max_size=25).map("".join))


@pytest.fixture(scope="module")
def tasks() -> Iterator[dict[str, Task]]:
    built = {name: get_task(name) for name in PROBLEMS}
    yield built
    built["math"].judge.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list(PROBLEMS))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(completion=COMPLETIONS)
def test_score_never_raises(tasks: dict[str, Task], name: str, completion: str) -> None:
    verdict = tasks[name].score(completion, PROBLEMS[name])
    assert isinstance(verdict.correct, bool)
    assert verdict.answer is None or isinstance(verdict.answer, str)
    if verdict.answer is None:
        assert not verdict.correct


@pytest.mark.parametrize("name", list(PROBLEMS))
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prefix=COMPLETIONS)
def test_a_final_gold_answer_line_always_wins(
    tasks: dict[str, Task], name: str, prefix: str
) -> None:
    """Whatever came before, a last line "Final answer: <gold>" is judged correct."""
    problem = PROBLEMS[name]
    answer = f"${problem.answer}$" if name == "math" else problem.answer
    completion = f"{prefix}\nFinal answer: {answer}"
    assert tasks[name].score(completion, problem).correct
