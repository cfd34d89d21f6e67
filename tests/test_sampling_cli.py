"""`irpo sample`, `irpo merge-samples` and `irpo eval` through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irpo.cli import app
from irpo.records import read_samples

SMALL = ["--limit", "5", "--set", "sampling.num_samples=2", "--set", "sampling.max_new_tokens=8"]


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_sample_shards_and_merge(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    output = _invoke(
        "sample", "--model", model, "--task", "arith", "--out", str(tmp_path / "whole"), *SMALL
    )
    assert "5 questions x 2 samples: 0 correct, 0 wrong, 10 unparseable" in output
    whole = tmp_path / "whole" / "samples.jsonl"
    samples = read_samples(whole)
    assert [(s.index, s.correct) for s in samples] == [(0, False), (1, False)] * 5
    stats = json.loads((tmp_path / "whole" / "samples.stats.json").read_text())
    assert (stats["questions"], stats["samples"], stats["all_wrong"]) == (5, 10, 5)

    split = tmp_path / "split"
    for shard in ("0/2", "1/2"):
        _invoke(
            "sample",
            "--model",
            model,
            "--task",
            "arith",
            "--out",
            str(split),
            "--shard",
            shard,
            *SMALL,
        )
    assert sorted(p.name for p in split.glob("samples.shard-*.jsonl")) == [
        "samples.shard-0-of-2.jsonl",
        "samples.shard-1-of-2.jsonl",
    ]
    output = _invoke("merge-samples", str(split), "--task", "arith", *SMALL)
    assert "merged 2 shards: 10 samples of 5 questions" in output
    assert (split / "samples.jsonl").read_bytes() == whole.read_bytes()


def test_eval_writes_metrics_json(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "eval.json"
    output = _invoke(
        "eval", "--model", str(tiny_model_dir), "--task", "arith", "--maj", "3", "--out", str(out),
        "--limit", "4", "--set", "sampling.max_new_tokens=6",
    )  # fmt: skip
    assert "greedy accuracy:    0.00%" in output
    assert "maj@3 accuracy:   0.00%" in output
    data = json.loads(out.read_text())
    # a random tiny model writes no "Final answer:" line: everything unparseable
    expected = {
        "num_problems": 4,
        "k": 3,
        "greedy_accuracy": 0.0,
        "maj_accuracy": 0.0,
        "pass_accuracy": 0.0,
        "parse_failure_rate": 1.0,
    }
    assert {k: data[k] for k in expected} == expected
    assert len(data["per_question"]) == 4
    assert data["settings"]["max_new_tokens"] == 6


def test_errors_are_one_line_with_status_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["sample", "--model", "./no/such/model", "--task", "arith", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "error: model './no/such/model': no such folder" in result.output
    result = CliRunner().invoke(
        app, ["sample", "--model", "x", "--task", "arith", "--out", str(tmp_path), "--shard", "2/2"]
    )
    assert result.exit_code == 2
    assert "shard 2/2: expected I/N with 0 <= I < N" in result.output


@pytest.mark.slow
def test_installed_entry_point(tmp_path: Path, tiny_model_dir: Path) -> None:
    irpo = Path(sys.executable).with_name("irpo")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(irpo),
        "sample",
        "--model",
        str(tiny_model_dir),
        "--task",
        "arith",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run([*cmd, *SMALL], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5 questions x 2 samples" in done.stdout
    assert len(read_samples(tmp_path / "samples.jsonl")) == 10
