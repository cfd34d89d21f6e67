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


# --------------------------------------------------------------------------- one writer


def test_a_second_writer_is_refused_with_the_holder(tmp_path: Path) -> None:
    import os
    import socket

    run = RunDir(tmp_path / "r")
    with run.writer_lock():
        holder = f"pid {os.getpid()} on host {socket.gethostname()}, since "
        with (
            pytest.raises(IrpoError, match="is being written by another irpo run") as err,
            RunDir(tmp_path / "r").writer_lock(),
        ):
            pass
        assert holder in str(err.value)
    with RunDir(tmp_path / "r").writer_lock():  # released when the holder's block ends
        pass


def test_a_dead_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import os, sys; from irpo.rundir import RunDir\n"
        "with RunDir(sys.argv[1]).writer_lock(): os._exit(9)\n"  # dies holding the lock
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], check=False)
    assert done.returncode == 9
    assert '"pid"' in (tmp_path / "r" / "run.lock").read_text()
    with RunDir(tmp_path / "r").writer_lock():
        pass


# --------------------------------------------------------------------------- checked outputs


def _two_stages(root: Path) -> RunDir:
    run = RunDir(root)
    run.init(load_config(None))
    (root / "a.txt").write_text("first\n")
    (root / "m").mkdir()
    (root / "m" / "w.bin").write_bytes(b"\x00" * 10)
    run.mark_done("a", [root / "a.txt"])
    run.mark_done("b", [root / "m"], steps=3)
    return run


def test_outputs_are_recorded_with_size_and_hash(tmp_path: Path) -> None:
    import hashlib

    run = _two_stages(tmp_path)
    assert run.stage_info("a")["outputs"] == {
        "a.txt": {"size": 6, "sha256": hashlib.sha256(b"first\n").hexdigest()}
    }
    assert list(run.stage_info("b")["outputs"]) == ["m/w.bin"]
    assert RunDir(tmp_path).is_done("a") and RunDir(tmp_path).is_done("b")
    with pytest.raises(IrpoError, match="missing or empty"):
        run.mark_done("c", [tmp_path / "nothing-here"])


def test_a_changed_output_is_redone_and_so_is_what_came_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _two_stages(tmp_path)
    (tmp_path / "a.txt").write_text("fir")  # truncated after the fact
    run = RunDir(tmp_path)
    assert not run.is_done("a")
    assert f"stage a: {tmp_path / 'a.txt'} has 3 bytes, 6 were written; redoing the stage" in (
        caplog.text
    )
    assert not (tmp_path / "a.txt").exists()  # removed, so the stage starts afresh
    assert run.stage_info("a")["status"] == "redo"
    assert run.is_done("b")  # not yet: b is only invalid if a's redo differs
    (tmp_path / "a.txt").write_text("other\n")
    run.mark_done("a", [tmp_path / "a.txt"])
    assert run.is_done("a") and not run.is_done("b")
    assert "b" not in run.manifest()["stages"] and not (tmp_path / "m").exists()


def test_a_redo_with_the_same_result_keeps_what_came_after(tmp_path: Path) -> None:
    _two_stages(tmp_path)
    (tmp_path / "m" / "w.bin").write_bytes(b"\x01" * 10)  # same size, other bytes
    run = RunDir(tmp_path)
    assert run.is_done("a") and not run.is_done("b")
    (tmp_path / "a.txt").write_text("first\n")
    run.mark_done("a", [tmp_path / "a.txt"])  # a again, with the same bytes
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"\x00" * 10)
    run.mark_done("b", [tmp_path / "m"])
    assert list(run.manifest()["stages"]) == ["a", "b"]
