from __future__ import annotations

from pathlib import Path

import pytest

from irpo.config import load_config
from irpo.errors import IrpoError
from irpo.rundir import RunDir, config_changes


def test_layout(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert run.iteration(2).samples == tmp_path / "r" / "iter_2" / "samples.jsonl"
    assert run.iteration(0).model == tmp_path / "r" / "iter_0" / "train" / "model"
    assert run.eval_path(1) == tmp_path / "r" / "evals" / "model_1.json"


def test_manifest_marks_stages(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.init(load_config(None))
    assert not run.is_done("iter_0/sample")
    run.mark_done("iter_0/sample", pairs=3)
    assert run.is_done("iter_0/sample")
    assert run.stage_info("iter_0/sample")["pairs"] == 3
    assert RunDir(tmp_path).is_done("iter_0/sample")


def test_same_config_reopens(tmp_path: Path) -> None:
    RunDir(tmp_path).init(load_config(None, ["seed=1"]))
    RunDir(tmp_path).init(load_config(None, ["seed=1"]))
    assert RunDir(tmp_path).load_config().seed == 1


def test_changed_config_is_refused_with_the_keys(tmp_path: Path) -> None:
    RunDir(tmp_path).init(load_config(None))
    with pytest.raises(IrpoError) as err:
        RunDir(tmp_path).init(load_config(None, ["train.beta=0.5", "sampling.num_samples=4"]))
    msg = str(err.value)
    assert "train.beta: 0.1 -> 0.5" in msg
    assert "sampling.num_samples: 30 -> 4" in msg
    assert "--allow-config-change" in msg
    assert RunDir(tmp_path).load_config().train.beta == 0.1  # the saved config is untouched


def test_allowed_change_updates_the_saved_config(tmp_path: Path) -> None:
    RunDir(tmp_path).init(load_config(None))
    RunDir(tmp_path).init(load_config(None, ["train.beta=0.5"]), allow_config_change=True)
    assert RunDir(tmp_path).load_config().train.beta == 0.5


def test_more_iterations_extend_a_run(tmp_path: Path) -> None:
    RunDir(tmp_path).init(load_config(None, ["loop.iterations=1"]))
    RunDir(tmp_path).init(load_config(None, ["loop.iterations=3"]))
    assert RunDir(tmp_path).load_config().loop.iterations == 3


def test_config_changes_lists_nested_keys() -> None:
    a = load_config(None)
    b = load_config(None, ["task.options.steps=3"])
    assert config_changes(a, b) == {"task.options.steps": (None, 3)}


def test_metrics_survive_a_cut_last_line(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.log_metrics({"stage": "eval", "x": 1})
    with run.metrics_path.open("a") as f:
        f.write('{"stage": "ev')
    run.log_metrics({"stage": "eval", "x": 2})
    assert [m["x"] for m in run.metrics()] == [1, 2]
