"""What real models write, table by table: each case names the format it imitates and gives the
exact verdict (answer, correct, extraction rule) under the default `flexible` mode and, where it
differs, under `strict`. Kinds: wrong answers that must not be accepted, right answers that must
not be rejected, and the embedded model's own ARC outputs (tests/data)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from irpo.records import Problem
from irpo.tasks import get_task
from irpo.tasks.arc_challenge import ArcChallengeTask
from irpo.tasks.competition_math import MathTask
from irpo.tasks.gsm8k import GSM8KTask
from irpo.tasks.math_judge import MATH_VERIFY_FALSE_EQUALITIES, MathJudge, answer_parts

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def math_task() -> Iterator[MathTask]:
    task = MathTask()
    yield task
    task.judge.close()


def _p(answer: str) -> Problem:
    return Problem(id="p", question="q", answer=answer)


# --------------------------------------------------------------------------- wrong answers

WRONG_MATH = [
    # (source, gold, completion): every one must be judged wrong
    ("simple-evals", "4, 15, and 27", "Final answer: 5, 12, and 27"),
    ("simple-evals", "4, 15, and 27", "Final answer: 4, 15, and 28"),
    ("simple-evals", "4, 15, and 27", "Final answer: 4, 15"),
    ("simple-evals", "4, 15, and 27", "Final answer: 4, 15, 27, and 30"),
    (
        "Qwen2.5-Math",
        "19, 46, \\text{ and } 82",
        "The numbers are $\\boxed{21, 36, \\text{ and } 82}$.",
    ),
    ("Qwen2.5-Math", "2, 3", "Final answer: $2$ and $4$"),
    ("R1-style", "-3, 2", "\\boxed{-3} \\text{ and } \\boxed{3}"),
    ("R1-style", "1, 2, 5", "\\boxed{1}, \\boxed{2}, \\boxed{6}"),
    ("R1-style", "(1,4),(4,1)", "\\boxed{(1,4)}, \\boxed{(1,4)}"),
    ("MetaMath", "2", "The answer is: -3 or 2"),
    ("GPT-4o", "2", "Final answer: $x=-3$ or $x=2$"),
    ("Qwen2.5-Math", "\\frac{1}{3^{40}}", "Final answer: $\\frac{1}{3^{41}}$"),
    ("Qwen2.5-Math", "\\frac{1}{3^{40}}", "So the probability is $\\boxed{\\dfrac{1}{3^{39}}}$."),
    ("R1-style", "\\frac{1}{500!}", "\\boxed{\\frac{1}{498!}}"),
    ("R1-style", "\\frac{1}{500!}", "Final answer: $1/498!$"),
    ("lm-eval", "\\frac{1}{2^{99}}", "Final answer: $\\frac{1}{2^{98}}$"),
    ("lm-eval", "10^{-20}", "Final answer: $10^{-21}$"),
    ("lm-eval", "2^{-40}", "Final answer: $2^{-41}$"),
    ("GPT-4o", "0.0000001", "Final answer: 0.0000002"),
    ("GPT-4o", "\\frac{\\sqrt{2}}{2^{100}}", "Final answer: $\\frac{\\sqrt{2}}{2^{101}}$"),
    ("MetaMath", "1000000001", "The answer is: 1000000000"),
    ("Qwen2.5-Math", "1, 2, \\ldots, k", "Final answer: $1, 3, 5, \\ldots, 2k-1$"),
    ("Qwen2.5-Math", "1, 2, \\ldots, n", "Final answer: $1, 2, \\ldots, n-1$"),
    ("R1-style", "1, 3, 5, \\ldots", "\\boxed{1, 3, 5, 7}"),
    ("R1-style", "2, 4, \\ldots, 2n", "\\boxed{2, 4, 6, \\ldots, 2n}"),
    ("GPT-4o", "3:8", "Final answer: $S_{ABC}:S = 3:5$"),
    ("GPT-4o", "|PQ| = 5", "Final answer: 6"),
    ("GPT-4o", "x=2", "Final answer: $y=2$"),
    ("Phi-2", "5x - 7y + 11z + 4 = 0", "Final answer: 4"),
    ("MetaMath", "\\frac{1}{2}", "The answer is: the half"),
]


@pytest.mark.parametrize(("source", "gold", "completion"), WRONG_MATH)
def test_wrong_math_answers_are_not_accepted(
    math_task: MathTask, source: str, gold: str, completion: str
) -> None:
    started = time.perf_counter()
    assert math_task.score(completion, _p(gold)).correct is False, source
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(("gold", "prediction", "reported"), MATH_VERIFY_FALSE_EQUALITIES)
def test_math_verify_false_equalities_are_guarded(
    gold: str, prediction: str, reported: str
) -> None:
    judge = MathJudge(timeout=5.0)
    assert judge.same_answer(gold, prediction) is False, reported
    assert judge.same_answer(gold, gold) is True
    judge.close()


WRONG_NUMBER = [
    ("GSM8K-tuned", "18", "16-3-4=9\n#### 9"),
    ("lm-eval", "18", "The answer is 9.\n#### 9"),
    ("MetaMath", "18", "The answer is: 1.8"),
    ("simple-evals", "18", "Janet makes 18 dollars a day, wait no.\nANSWER: 16"),
    ("GPT-4o", "2", "Final answer: 2 1/4 cups"),
    ("GPT-4o", "2500", "Final answer: 2.5 million"),
    ("Llama-3", "700000000", "Final answer: 700 thousand"),
    ("GSM8K-tuned", "12500", "#### 12 600"),
    ("Llama-3", "18", "Final answer: $18 or $20"),
    ("R1-style", "18", "\\boxed{20}"),
]


@pytest.mark.parametrize(("source", "gold", "completion"), WRONG_NUMBER)
def test_wrong_numbers_are_not_accepted(source: str, gold: str, completion: str) -> None:
    assert GSM8KTask().score(completion, _p(gold)).correct is False, source


# --------------------------------------------------------------------------- right answers

RIGHT_MATH = [
    # (source, gold, completion, answer, rule)
    ("R1-style", "-3, 2", "So $x = \\boxed{-3} \\text{ and } x = \\boxed{2}$.", "-3, 2", "boxed"),
    ("R1-style", "-3, 2", "\\boxed{-3} \\text{ and } \\boxed{2}", "-3, 2", "boxed"),
    ("R1-style", "(1,4),(4,1)", "\\boxed{(1,4)}, \\boxed{(4,1)}", "(1,4), (4,1)", "boxed"),
    (
        "R1-style",
        "1, 2, 5",
        "The values are \\boxed{1}, \\boxed{2}, \\boxed{5}.",
        "1, 2, 5",
        "boxed",
    ),
    ("R1-style", "1, 2, 5", "\\boxed{5}, \\boxed{1}, and \\boxed{2}", "5, 1, 2", "boxed"),
    ("R1-style", "2", "we check \\boxed{1} fails, so $n=\\boxed{2}$", "2", "boxed"),
    ("Qwen2.5-Math", "-3, 2", "Final answer: $-3$ or $2$", "-3, 2", "final_answer"),
    ("Qwen2.5-Math", "-3, 2", "Final answer: $x=-3$ and $x=2$", "x=-3, x=2", "final_answer"),
    ("Qwen2.5-Math", "-3, 2", "Final answer: The roots are $-3$ and $2$.", "-3, 2", "final_answer"),
    ("Qwen2.5-Math", "-3, 2", "Final answer: $2, -3$", "2, -3", "final_answer"),
    ("GPT-4o", "4, 15, and 27", "Final answer: 27, 4, and 15", "27, 4, and 15", "final_answer"),
    ("GPT-4o", "4, 15, and 27", "Final answer: $4, 15, 27$", "4, 15, 27", "final_answer"),
    ("GPT-4o", "\\{1,2,5\\}", "Final answer: 5, 2, 1", "5, 2, 1", "final_answer"),
    (
        "GPT-4o",
        "\\{1\\pm\\sqrt{5},-2\\}",
        "Final answer: $1+\\sqrt5, 1-\\sqrt5, -2$",
        "1+\\sqrt5, 1-\\sqrt5, -2",
        "final_answer",
    ),
    ("Qwen2.5-Math", "\\frac{1}{3^{40}}", "Final answer: $3^{-40}$", "3^{-40}", "final_answer"),
    (
        "Qwen2.5-Math",
        "\\frac{1}{500!}",
        "Final answer: $\\frac{1}{500!}$",
        "\\frac{1}{500!}",
        "final_answer",
    ),
    (
        "Qwen2.5-Math",
        "1, 2, \\ldots, k",
        "Final answer: $1, 2, \\dots, k$",
        "1, 2, \\dots, k",
        "final_answer",
    ),
    ("GPT-4o", "S_{ABC}:S = 3:8", "Final answer: $3:8$", "3:8", "final_answer"),
    ("GPT-4o", "3:8", "Final answer: $S_{ABC}:S = 3:8$", "S_{ABC}:S = 3:8", "final_answer"),
    ("GPT-4o", "|PQ| = 5", "Final answer: 5", "5", "final_answer"),
    ("GPT-4o", "y = 2x + 3", "Final answer: $2x+3$", "2x+3", "final_answer"),
    ("GPT-4o", "x=5", "Final answer: 5", "5", "final_answer"),
    ("MetaMath", "10", "The answer is: 10", "10", "answer_is"),
    (
        "MetaMath",
        "\\frac{1}{2}",
        "So it halves.\nThe answer is: \\frac{1}{2}",
        "\\frac{1}{2}",
        "answer_is",
    ),
    (
        "Llama-3",
        "\\frac{1}{2}",
        "The final answer is: $\\boxed{\\frac{1}{2}}$",
        "\\frac{1}{2}",
        "final_answer",
    ),
    ("simple-evals", "8+4i", "so the sum is 8+4i\nANSWER: $4i+8$", "4i+8", "answer_line"),
    ("Phi-2", "10", "The total is 10.\n\n10", "10", "last_line"),
    ("Qwen2.5-Math", "58,500", "Final answer: 58500", "58500", "final_answer"),
    ("Qwen2.5-Math", "10,\\!080", "Final answer: 10080", "10080", "final_answer"),
    (
        "lm-eval",
        "\\frac{\\sqrt{2}}{2}",
        "Final answer: $\\frac{1}{\\sqrt{2}}$",
        "\\frac{1}{\\sqrt{2}}",
        "final_answer",
    ),
]


@pytest.mark.parametrize(("source", "gold", "completion", "answer", "rule"), RIGHT_MATH)
def test_right_math_answers_are_not_rejected(
    math_task: MathTask, source: str, gold: str, completion: str, answer: str, rule: str
) -> None:
    started = time.perf_counter()
    verdict = math_task.score(completion, _p(gold))
    assert (verdict.answer, verdict.correct, verdict.rule) == (answer, True, rule), source
    assert time.perf_counter() - started < 2.0


RIGHT_NUMBER = [
    # (source, gold, completion, answer, rule)
    ("GSM8K-tuned", "42", "6 * 7 = 42\n#### 42", "42", "hashes"),
    ("GSM8K-tuned", "1080", "So 9*120=1080.\n#### 1,080", "1080", "hashes"),
    ("GSM8K-tuned", "12500", "#### 12 500", "12500", "hashes"),
    (
        "lm-eval",
        "18",
        "She makes 9 * 2 = $<<9*2=18>>18.\n#### 18\n\nQuestion: Tom has",
        "18",
        "hashes",
    ),
    ("MetaMath", "18", "She makes 18 dollars.\nThe answer is: 18", "18", "answer_is"),
    ("simple-evals", "18", "9 eggs at $2 each.\n\nANSWER: 18", "18", "answer_line"),
    ("simple-evals", "18", "9 eggs at $2 each.\n\n**Answer:** $18", "18", "answer_line"),
    ("Llama-3", "18", "The final answer is: $\\boxed{18}$", "18", "final_answer"),
    ("Llama-3", "18", "Therefore, the answer is 18.", "18", "answer_is"),
    ("R1-style", "18", "<think>9*2</think>\nJanet makes $\\boxed{18}$ dollars.", "18", "boxed"),
    ("GPT-4o", "700000000", "Final answer: 700 million", "700000000", "final_answer"),
    ("GPT-4o", "2500", "Final answer: 2.5 thousand", "2500", "final_answer"),
    ("GPT-4o", "1500000", "Final answer: $1.5 million", "1500000", "final_answer"),
    ("GPT-4o", "2.25", "Final answer: 2 1/4 cups", "2.25", "final_answer"),
    ("GPT-4o", "2.25", "Final answer: $2\\frac{1}{4}$", "2.25", "final_answer"),
    ("GPT-4o", "-2.25", "Final answer: -2 1/4", "-2.25", "final_answer"),
    ("GSM8K-tuned", "70000", "Final answer: 70 000 dollars", "70000", "final_answer"),
    ("GSM8K-tuned", "1234567", "Final answer: 1 234 567", "1234567", "final_answer"),
    ("Phi-2", "18", "She sells 9 eggs for $2 each.\n\n18", "18", "last_line"),
    ("Phi-2", "18", "Final answer:\n\n**18**", "18", "final_answer"),
    ("R1-style", "18", "So she makes \\boxed{18} dollars.\nFinal answer:", "18", "boxed"),
    (
        "MetaMath",
        "5",
        "The answer is: 5\n\nQuestion: What is 2+2?\nThe answer is: 4",
        "5",
        "answer_is",
    ),
]


@pytest.mark.parametrize(("source", "gold", "completion", "answer", "rule"), RIGHT_NUMBER)
def test_right_numbers_are_not_rejected(
    source: str, gold: str, completion: str, answer: str, rule: str
) -> None:
    verdict = GSM8KTask().score(completion, _p(gold))
    assert (verdict.answer, verdict.correct, verdict.rule) == (answer, True, rule), source


def test_strict_reads_only_the_marker() -> None:
    strict, flexible = get_task("gsm8k", answer_mode="strict"), GSM8KTask()
    for source, gold, completion, _, rule in RIGHT_NUMBER:
        verdict = strict.score(completion, _p(gold))
        if rule == "final_answer":
            assert verdict == flexible.score(completion, _p(gold)), source
        else:
            assert (verdict.answer, verdict.rule) == (None, None), source
    assert flexible.score_modes("#### 42", _p("42")) == {
        "strict": strict.score("#### 42", _p("42")),
        "flexible": flexible.score("#### 42", _p("42")),
    }


PALMS = Problem(
    id="palms",
    question="Which skin surface will produce the most heat?",
    answer="C",
    choices=(
        ("A", "dry palms"),
        ("B", "wet palms"),
        ("C", "palms covered with oil"),
        ("D", "Make a table for recording data."),
    ),
)

CHOICES = [
    # (source, completion, answer, rule)
    ("smollm2", 'Step 2: Determine the answer\nThe answer is "C"', "C", "answer_is"),
    ("smollm2", "The correct answer is D) Make a table for recording data.", "D", "answer_is"),
    ("smollm2", "- The answer is (B) from the pitcher to the ice.", "B", "answer_is"),
    ("smollm2", 'The final answer is "D" (the type of environment).', "D", "final_answer"),
    ("smollm2", "Final Answer: Palms covered with oil.", "C", "final_answer"),
    ("smollm2", 'Final Answer: "palms covered with oil"', "C", "final_answer"),
    ("smollm2", 'The final answer is "palms covered with oil" (C).', "C", "final_answer"),
    ("smollm2", "The answer is (B) wet.\n\nFinal Answer:", "B", "answer_is"),
    ("lm-eval", "Oil keeps the heat in, so the correct answer is C.", "C", "answer_is"),
    ("Llama-3", "The best answer is C.", "C", "answer_is"),
    ("Llama-3", "The best answer is (D)", "D", "answer_is"),
    ("GPT-4o", "The answer: D", "D", "answer_line"),
    ("GPT-4o", "The answer is \\( \\text{B. wet palms} \\)", "B", "answer_is"),
    ("GPT-4o", "The answer is $\\text{(C)}$.", "C", "answer_is"),
    ("GPT-4o", "The answer is for sure D", "D", "answer_is"),
    ("simple-evals", "Oil traps heat.\n\nAnswer: C", "C", "answer_line"),
    ("simple-evals", "Oil traps heat.\n\nANSWER: C", "C", "answer_line"),
    ("simple-evals", "Oil traps heat.\n\n**Answer: (C)**", "C", "answer_line"),
    ("Phi-2", "Oil traps heat.\n(C)", "C", "last_line"),
    ("R1-style", "</think>\n\n\\boxed{C}", "C", "boxed"),
    ("R1-style", "So the option is $\\boxed{\\text{C}}$", "C", "boxed"),
    ("MetaMath", "The answer is: A", "A", "answer_is"),
    (
        "lm-eval",
        "Final answer: C\n\nQuestion: Which is a gas?\nThe answer is (A).",
        "C",
        "final_answer",
    ),
]


@pytest.mark.parametrize(("source", "completion", "answer", "rule"), CHOICES)
def test_choice_formats(source: str, completion: str, answer: str, rule: str) -> None:
    verdict = ArcChallengeTask().score(completion, PALMS)
    assert (verdict.answer, verdict.correct, verdict.rule) == (answer, answer == "C", rule), source


UNREADABLE_CHOICES = [
    "The answer is not the other options.",
    "Final answer: palms covered",  # not an option's text: never by similarity
    "Final answer: C = 222",
    "Final Answer: Palms are covered with some oil.",
    "The answer is A or B.",
    "Final answer: (insert letter here)",
    'The final answer is "dry palms" (C).',  # the text names A, the label C
    "Step 1: Identify the question\nThe question is asking about heat.",
]


@pytest.mark.parametrize("completion", UNREADABLE_CHOICES)
def test_unreadable_choices_stay_unparsed(completion: str) -> None:
    assert ArcChallengeTask().score(completion, PALMS).answer is None


# --------------------------------------------------------------------------- real outputs


def _arc_cases() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = json.loads(
        (DATA / "arc_smollm2_greedy.json").read_text(encoding="utf-8")
    )["cases"]
    return cases


@pytest.mark.parametrize("case", _arc_cases(), ids=lambda c: f"{c['id']}-{c['dtype']}")
def test_embedded_model_arc_outputs(case: dict[str, object]) -> None:
    """The greedy ARC outputs of smollm2-135m, each verdict checked by hand."""
    choices = tuple((str(a), str(b)) for a, b in case["choices"])  # type: ignore[attr-defined]
    problem = Problem(id=str(case["id"]), question="q", answer=str(case["key"]), choices=choices)
    verdicts = ArcChallengeTask().score_modes(str(case["text"]), problem)
    for mode in ("strict", "flexible"):
        answer, rule = case[mode]  # type: ignore[misc]
        assert (verdicts[mode].answer, verdicts[mode].rule) == (answer, rule), mode
        assert verdicts[mode].correct == (answer == case["key"])


def test_embedded_model_arc_parse_rates() -> None:
    cases = _arc_cases()
    unparsed = {m: sum(c[m][0] is None for c in cases) for m in ("strict", "flexible")}  # type: ignore[index]
    assert (len(cases), unparsed) == (68, {"strict": 36, "flexible": 16})


def test_answer_parts() -> None:
    assert answer_parts("4, 15, and 27") == ["4", "15", "27"]
    assert answer_parts("-3 \\text{ or } 2") == ["-3", "2"]
    assert answer_parts("\\{1,2\\}") == ["1", "2"]
    assert answer_parts("(1,4),(4,1)") == ["(1,4)", "(4,1)"]
    assert answer_parts("[2,5)") == ["[2,5)"]
    assert answer_parts("58,500") == ["58500"]
    assert answer_parts("11,\\! 111,\\! 111,\\! 100") == ["11111111100"]
    assert answer_parts("(0,9) \\cup (9,36)") == ["(0,9) \\cup (9,36)"]
    assert answer_parts("\\text{Devon and Evan}") == ["\\text{Devon and Evan}"]
