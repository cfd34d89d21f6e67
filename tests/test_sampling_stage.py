"""The sampling stage: verdicts and statistics, resuming an interrupted run, shards."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from irpo.errors import IrpoError
from irpo.records import Problem, Verdict, read_json, read_samples
from irpo.sampling import (
    Completion,
    DecodeParams,
    Progress,
    PromptRequest,
    SamplingParams,
    Shard,
    merge_shards,
    sample_problems,
)
from irpo.sampling.shards import write_samples
from irpo.sampling.stage import settings_file, stats_file
from irpo.tasks.base import Task


class EchoTask(Task):
    """Answers are whatever follows "Final answer:" on its line."""

    name = "echo"

    def load_with_stats(
        self, source: Any, split: str, *, limit: Any = None, skip_bad_rows: bool = False
    ) -> Any:
        raise NotImplementedError

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nSolution:"

    def score(self, completion: str, problem: Problem) -> Verdict:
        _, sep, tail = completion.partition("Final answer:")
        if not sep or not tail.strip():
            return Verdict(None, False)
        answer = tail.splitlines()[0].strip()
        return Verdict(answer, answer == problem.answer)


# answers per question and sample index; None: no final answer
TABLE: dict[str, list[str | None]] = {
    "q0": ["1", "1", "1"],  # all correct
    "q1": ["2", None, "2"],  # 2 wrong, 1 unparseable
    "q2": ["1", "2", None],  # mixed
    "q3": [None, None, None],  # all unparseable
}
PROBLEMS = [Problem(id=k, question=f"what is {k}?", answer="1") for k in TABLE]
PARAMS = SamplingParams(num_samples=3, temperature=0.8, max_new_tokens=16, seed=7)


class TableEngine:
    """Completions looked up in TABLE; records which questions it was asked for."""

    name = "table"

    def __init__(self, crash_after: int | None = None) -> None:
        self.asked: list[str] = []
        self.crash_after = crash_after

    def encode_prompt(self, prompt: str) -> list[int]:
        return [ord(c) for c in prompt]

    def generate(
        self,
        requests: Sequence[PromptRequest],
        params: DecodeParams,
        progress: Progress | None = None,
        on_step: Any = None,
    ) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        for n, req in enumerate(requests):
            if n == self.crash_after:
                raise KeyboardInterrupt
            self.asked.append(req.key)
            comps = []
            for j, answer in enumerate(TABLE[req.key][: req.num_samples]):
                text = f"step\nFinal answer: {answer}\n" if answer else "step\n"
                comps.append(Completion(j, [ord(c) for c in text], text, "stop"))
            yield req, comps


def test_records_carry_verdicts_and_stats_count_them(tmp_path: Path) -> None:
    out = tmp_path / "samples.jsonl"
    stats = sample_problems(TableEngine(), EchoTask(), PROBLEMS, PARAMS, out)
    samples = read_samples(out)
    assert [(s.problem_id, s.index) for s in samples] == [(q, j) for q in TABLE for j in range(3)]
    assert [(s.answer, s.correct) for s in samples[3:6]] == [
        ("2", False),
        (None, False),
        ("2", False),
    ]
    assert samples[0].text == "step\nFinal answer: 1\n"
    assert samples[0].token_ids == [ord(c) for c in samples[0].text]
    summary = stats.summary()
    expected = {
        "questions": 4,
        "num_samples": 3,
        "samples": 12,
        "correct": 4,
        "wrong": 3,
        "unparseable": 5,
        "accuracy": 4 / 12,
        "parse_failure_rate": 5 / 12,
        "all_correct": 1,
        "all_wrong": 2,
        "mixed": 1,
        "all_unparseable": 1,
        "resumed_questions": 0,
    }
    assert {k: summary[k] for k in expected} == expected
    # tokens: 21 characters per answered sample, 5 per unanswered one
    assert summary["tokens"] == 7 * 21 + 5 * 5
    on_disk = read_json(stats_file(out))
    assert on_disk["per_question"][1] == {
        "problem_id": "q1",
        "n": 3,
        "correct": 0,
        "wrong": 2,
        "unparseable": 1,
    }
    assert read_json(settings_file(out))["seed"] == 7


def test_resume_after_a_crash_has_no_gaps_and_no_duplicates(tmp_path: Path) -> None:
    reference = tmp_path / "reference.jsonl"
    sample_problems(TableEngine(), EchoTask(), PROBLEMS, PARAMS, reference)

    out = tmp_path / "samples.jsonl"
    with pytest.raises(KeyboardInterrupt):
        sample_problems(TableEngine(crash_after=2), EchoTask(), PROBLEMS, PARAMS, out)
    assert [s.problem_id for s in read_samples(out)] == ["q0"] * 3 + ["q1"] * 3
    # the crash also left two rows of q2 and half a line of the third
    rows = reference.read_text().splitlines(keepends=True)
    with out.open("a") as f:
        f.write(rows[6] + rows[7] + rows[8][:25])

    engine = TableEngine()
    stats = sample_problems(engine, EchoTask(), PROBLEMS, PARAMS, out)
    assert engine.asked == ["q2", "q3"]  # finished questions are not redone
    assert out.read_bytes() == reference.read_bytes()
    assert stats.resumed_questions == 2
    assert stats.summary()["samples"] == 12
    assert stats.to_dict()["per_question"] == read_json(stats_file(reference))["per_question"]


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "samples.jsonl"
    sample_problems(TableEngine(), EchoTask(), PROBLEMS[:2], PARAMS, out)
    other = SamplingParams(num_samples=3, temperature=1.3, max_new_tokens=16, seed=7)
    with pytest.raises(IrpoError, match=r"temperature: 0.8 -> 1.3"):
        sample_problems(TableEngine(), EchoTask(), PROBLEMS, other, out)


def test_duplicate_problem_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IrpoError, match="'q0' appears twice"):
        sample_problems(
            TableEngine(), EchoTask(), [PROBLEMS[0], PROBLEMS[0]], PARAMS, tmp_path / "s.jsonl"
        )


# --------------------------------------------------------------------------- with a real model


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Any:
    from irpo.models import load_model, load_tokenizer
    from irpo.sampling.transformers_engine import TransformersEngine

    model = load_model(str(tiny_model_dir), device="cpu")
    return TransformersEngine(model, load_tokenizer(str(tiny_model_dir)), batch_size=5)


MANY = [Problem(id=f"p{i}", question="1+" * i + "1", answer=str(i + 1)) for i in range(9)]
SAMPLED = SamplingParams(num_samples=2, temperature=1.0, max_new_tokens=12, seed=3, iteration=1)


def test_merged_shards_equal_the_unsharded_run(tmp_path: Path, engine: Any) -> None:
    whole = tmp_path / "whole.jsonl"
    sample_problems(engine, EchoTask(), MANY, SAMPLED, whole)
    shards = [tmp_path / f"shard{i}.jsonl" for i in range(3)]
    for i, path in enumerate(shards):
        sample_problems(engine, EchoTask(), MANY, SAMPLED, path, shard=Shard(i, 3))
    assert all(read_samples(p) for p in shards)  # every shard got questions
    merged = tmp_path / "merged.jsonl"
    write_samples(merged, merge_shards(shards, MANY))
    assert merged.read_bytes() == whole.read_bytes()
    with pytest.raises(IrpoError, match="also in"):
        merge_shards([shards[0], shards[0]], MANY)


def test_interrupted_real_run_resumes_to_the_same_file(tmp_path: Path, engine: Any) -> None:
    whole = tmp_path / "whole.jsonl"
    sample_problems(engine, EchoTask(), MANY, SAMPLED, whole)

    def stop_after(steps: list[int]) -> Any:
        def on_step(p: Progress) -> None:
            steps.append(p.questions_done)
            if p.questions_done >= 4:
                raise KeyboardInterrupt

        return on_step

    out = tmp_path / "samples.jsonl"
    steps: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        sample_problems(engine, EchoTask(), MANY, SAMPLED, out, progress=stop_after(steps))
    partial = read_samples(out)
    assert 0 < len(partial) < 18
    assert len(partial) % 2 == 0  # whole questions only
    stats = sample_problems(engine, EchoTask(), MANY, SAMPLED, out)
    assert out.read_bytes() == whole.read_bytes()
    assert stats.resumed_questions == len(partial) // 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({(r["problem_id"], r["index"]) for r in lines}) == 18


def test_a_stop_request_ends_after_the_question_being_written(tmp_path: Path) -> None:
    import signal

    from irpo import preemption

    whole = tmp_path / "whole.jsonl"
    sample_problems(TableEngine(), EchoTask(), PROBLEMS, PARAMS, whole)

    class StopAfterTwo(TableEngine):
        def generate(
            self, requests: Any, params: Any, progress: Any = None, on_step: Any = None
        ) -> Any:
            for n, item in enumerate(super().generate(requests, params, progress, on_step)):
                if n == 1:
                    preemption.request(signal.SIGTERM)  # arrives while q1 is being generated
                yield item

    out = tmp_path / "samples.jsonl"
    with (
        preemption.graceful_stop(),
        pytest.raises(preemption.Preempted, match=r"stopped by SIGTERM after 2 questions of"),
    ):
        sample_problems(StopAfterTwo(), EchoTask(), PROBLEMS, PARAMS, out)
    assert [s.problem_id for s in read_samples(out)] == ["q0"] * 3 + ["q1"] * 3  # whole records
    engine = TableEngine()
    sample_problems(engine, EchoTask(), PROBLEMS, PARAMS, out)
    assert engine.asked == ["q2", "q3"]  # only what was missing
    assert out.read_bytes() == whole.read_bytes()
