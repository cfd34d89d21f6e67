"""`irpo.tasks.audit.check_data` and the `irpo check-data` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irpo.cli import app
from irpo.records import Problem
from irpo.tasks import get_task
from irpo.tasks.audit import check_data
from irpo.tasks.gsm8k import GSM8KTask

runner = CliRunner()

GOOD = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"}


def _gsm8k_file(tmp_path: Path) -> Path:
    rows = [GOOD, {"question": "no answer here"}, {**GOOD, "question": "Again?"}]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_report_counts(tmp_path: Path) -> None:
    report = check_data(GSM8KTask(), str(_gsm8k_file(tmp_path)), "test", skip_bad_rows=True, show=1)
    assert (report.rows, report.loaded, report.skipped) == (3, 2, 1)
    assert report.skipped_reasons[0].endswith("test.jsonl:2: no 'answer' field")
    assert (report.gold_failed, report.gold_ok, report.gold_ok_rate) == (0, 2, 1.0)
    assert report.with_gold_completion == 2
    assert report.prompts == [GSM8KTask().prompt(Problem("test/0", GOOD["question"], "5"))]
    assert report.gold_completions == ["2+3=5\nFinal answer: 5"]


class BrokenGold(GSM8KTask):
    """A task whose gold completion states the wrong number: the audit must notice."""

    def gold_completion(self, problem: Problem) -> str | None:
        return "Final answer: 6"


def test_report_lists_gold_failures(tmp_path: Path) -> None:
    report = check_data(BrokenGold(), str(_gsm8k_file(tmp_path)), "test", skip_bad_rows=True)
    assert (report.gold_failed, report.gold_ok_rate) == (2, 0.0)
    assert report.issues[0].problem_id == "test/0"
    assert report.issues[0].reasons == ["gold completion scores as wrong (extracted '6')"]


def test_cli_arith() -> None:
    result = runner.invoke(
        app,
        [
            "check-data",
            "--task",
            "arith",
            "--limit",
            "20",
            "--show",
            "1",
            "--option",
            "max_number=9",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:6] == [
        "task arith, source (generated), split train",
        "rows read:           20",
        "problems loaded:     20",
        "bad rows skipped:    0",
        "with gold solution:  20",
        "gold not parsed:     0 (100.00% of gold answers parse)",
    ]
    problem = get_task("arith", max_number=9).load(None, "train", limit=1)[0]
    assert f"--- prompt 1 ---\nQuestion: {problem.question}\nSolution: " in result.output
    assert f"--- gold completion 1 ---\n{problem.solution}" in result.output


def test_cli_bad_rows_fail_then_skip(tmp_path: Path) -> None:
    path = _gsm8k_file(tmp_path)
    result = runner.invoke(app, ["check-data", "--task", "gsm8k", "--source", str(path)])
    assert result.exit_code == 2
    assert "test.jsonl:2: no 'answer' field" in result.output
    result = runner.invoke(
        app,
        ["check-data", "--task", "gsm8k", "--source", str(path), "--skip-bad-rows", "--show", "0"],
    )
    assert result.exit_code == 0, result.output
    assert "bad rows skipped:    1\n" in result.output
    assert "test.jsonl:2: no 'answer' field" in result.output
    assert "--- prompt" not in result.output
    strict = runner.invoke(
        app, ["check-data", "--task", "gsm8k", "--source", str(path), "--skip-bad-rows", "--strict"]
    )
    assert strict.exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check-data", "--task", "gsm9k", "--source", "x.jsonl"], "unknown task 'gsm9k'"),
        (
            ["check-data", "--task", "gsm8k", "--source", "missing.jsonl"],
            "missing.jsonl: file not found",
        ),
        (["check-data", "--task", "arith", "--option", "colour=red"], "unknown option(s) colour"),
        (["check-data", "--task", "arith", "--option", "a.b=1"], "expected NAME=VALUE"),
    ],
)
def test_cli_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_custom_task_through_options(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"q": "Capital of France?", "a": "Paris"}) + "\n")
    result = runner.invoke(
        app,
        [
            "check-data",
            "--task",
            "custom",
            "--source",
            str(path),
            "--option",
            "answer_type=exact",
            "--option",
            "question_field=q",
            "--option",
            "answer_field=a",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "problems loaded:     1\n" in result.output
    assert "Question: Capital of France?" in result.output


def test_entry_point_subprocess(tmp_path: Path) -> None:
    irpo = Path(sys.executable).parent / "irpo"
    path = _gsm8k_file(tmp_path)
    done = subprocess.run(
        [
            str(irpo),
            "check-data",
            "--task",
            "gsm8k",
            "--source",
            str(path),
            "--split",
            "test",
            "--skip-bad-rows",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "problems loaded:     2\n" in done.stdout
    assert "gold not parsed:     0 (100.00% of gold answers parse)" in done.stdout
    assert "skipped 1 bad row(s) of 3" in done.stderr  # the library's log line


def test_shared_data_arc_and_gsm8k_through_cli(shared_data: Path) -> None:
    for args, loaded in (
        (["-t", "arc_challenge", "--source", str(shared_data / "arc_challenge"), "-s", "dev"], 299),
        (["-t", "gsm8k", "--source", str(shared_data / "gsm8k"), "-s", "test"], 1319),
    ):
        result = runner.invoke(app, ["check-data", *args, "--show", "0", "--strict"])
        assert result.exit_code == 0, result.output
        assert f"problems loaded:     {loaded}\n" in result.output
        assert "gold not parsed:     0 (100.00% of gold answers parse)" in result.output


def test_samples_audit_counts_rules_and_endings(tmp_path: Path) -> None:
    source = _gsm8k_file(tmp_path)  # questions test/0 (gold 5) and test/2 (gold 5)
    texts = [
        ("test/0", "2+3=5\nFinal answer: 5", "5", True),  # stored: scored as now
        ("test/0", "2+3=5\n#### 5", None, False),  # stored by a strict run
        ("test/2", "The answer is: 6", "6", False),
        ("test/2", "I do not know.", None, False),
        ("test/2", "Hmm, 7 apples?\nI do not know.", None, False),
        ("other/1", "Final answer: 1", "1", False),  # not a question of the source
    ]
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(
            json.dumps(
                {
                    "problem_id": pid,
                    "index": i,
                    "text": text,
                    "token_ids": [1],
                    "finish_reason": "eos",
                    "answer": answer,
                    "correct": correct,
                }
            )
            + "\n"
            for i, (pid, text, answer, correct) in enumerate(texts)
        )
    )
    result = runner.invoke(
        app,
        [
            "check-data",
            "--task",
            "gsm8k",
            "--source",
            str(source),
            "--split",
            "test",
            "--skip-bad-rows",
            "--samples",
            str(samples),
            "--top",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "samples read:        6 (2 questions)" in lines
    assert "not in the source:   1 (pass the --source/--split the samples were drawn from)" in lines
    assert "strict: unparsed 4 (80.00%), correct 1" in lines
    assert "flexible (the task's mode): unparsed 2 (40.00%), correct 2" in lines
    assert "  hashes         1" in lines
    assert "  answer_is      1" in lines
    assert "stored verdicts that differ from the flexible verdict now: 1" in lines
    assert "      2  I do not know.   [e.g. test/2]" in lines
