"""`launch.mode: processes`: every stage in processes of its own, with the inline run's results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from irpo.config import load_config
from irpo.errors import IrpoError
from irpo.launch import LaunchPlan, train_command, workers_command
from irpo.rundir import RunDir
from tests.test_loop import _cli_run, _state, _wait_for, _write_config, finished_run, tiny_config

__all__ = ["finished_run"]  # the module fixture, used by name below

PROCESSES = ("launch.mode=processes", "launch.sampling_workers=2", "launch.train_processes=2")


def test_the_plan_counts_gpus_and_cores() -> None:
    cfg = load_config(None, ["launch.mode=processes", "sampling.vllm={tensor_parallel_size: 2}"])
    plan = LaunchPlan.of(cfg, gpus=8, cpus=2)
    assert (plan.sampling_workers, plan.tensor_parallel_size, plan.train_processes) == (4, 2, 8)
    assert LaunchPlan.of(load_config(None), gpus=0, cpus=2).sampling_workers == 1
    with pytest.raises(
        IrpoError,
        match=r"launch\.sampling_workers \(3\) x sampling\.vllm\.tensor_parallel_size \(2\) "
        r"needs 6 GPUs; 4 are visible",
    ):
        LaunchPlan.of(
            load_config(
                None, ["launch.sampling_workers=3", "sampling.vllm={tensor_parallel_size: 2}"]
            ),
            gpus=4,
        )
    with pytest.raises(
        IrpoError, match=r"launch\.train_processes \(9\) is more than the 8 visible GPUs"
    ):
        LaunchPlan.of(load_config(None, ["launch.train_processes=9"]), gpus=8)
    with pytest.raises(
        IrpoError,
        match=r"launch\.train_processes \(4\) is more than the 2 CPU cores of this machine",
    ):
        LaunchPlan.of(load_config(None, ["launch.train_processes=4"]), gpus=0, cpus=2)
    with pytest.raises(IrpoError, match=r"launch\.accelerate_config: nowhere\.yaml not found"):
        LaunchPlan.of(load_config(None, ["launch.accelerate_config=nowhere.yaml"]), gpus=1)


def test_the_launch_commands(tmp_path: Path) -> None:
    gpu = LaunchPlan(gpus=4, sampling_workers=4, tensor_parallel_size=1, train_processes=4,
                     accelerate_config="configs/accelerate/fsdp.yaml")  # fmt: skip
    assert train_command(gpu, ["train", "p.jsonl"], tmp_path) == [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", "configs/accelerate/fsdp.yaml", "--num_processes", "4",
        "-m", "irpo.cli", "train", "p.jsonl",
    ]  # fmt: skip
    cpu = LaunchPlan(gpus=0, sampling_workers=2, tensor_parallel_size=1, train_processes=2,
                     accelerate_config=None)  # fmt: skip
    assert train_command(cpu, ["train", "p.jsonl"], tmp_path) == workers_command(
        2, ["train", "p.jsonl"], tmp_path
    )
    one = LaunchPlan(gpus=1, sampling_workers=1, tensor_parallel_size=1, train_processes=1,
                     accelerate_config=None)  # fmt: skip
    assert train_command(one, ["train"], tmp_path) == [sys.executable, "-m", "irpo.cli", "train"]
    assert workers_command(1, ["sample"], tmp_path) == [
        "env", "RANK=0", "WORLD_SIZE=1", "LOCAL_RANK=0", sys.executable, "-m", "irpo.cli", "sample",
    ]  # fmt: skip
    assert workers_command(2, ["sample"], tmp_path)[:5] == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
    ]  # fmt: skip


def test_too_many_processes_are_refused_before_anything_runs(tmp_path: Path) -> None:
    from irpo.loop import run

    cores = os.cpu_count() or 1
    out = tmp_path / "refused"
    with pytest.raises(IrpoError, match=rf"launch\.sampling_workers \({cores + 1}\) is more than"):
        run(tiny_config("launch.mode=processes", f"launch.sampling_workers={cores + 1}"), out)
    assert RunDir(out).manifest()["stages"] == {}  # not even the seed model


def _assert_same_within(expected: Path, actual: Path, atol: float = 1e-5) -> None:
    """Evaluations, samples and pairs equal; final weights within `atol` (2 training processes
    sum their gradients in another order than 1)."""
    a, b = _state(expected), _state(actual)
    assert a["evals"] == b["evals"]
    assert a["samples"] == b["samples"]
    assert a["pairs"] == b["pairs"]
    for name, tensor in a["weights"].items():
        torch.testing.assert_close(b["weights"][name], tensor, rtol=0, atol=atol)


@pytest.mark.slow
def test_processes_give_the_inline_results(finished_run: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tiny.yaml", *PROCESSES)
    out = tmp_path / "processes"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(_cli_run(config, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_within(finished_run, out)
    runs = RunDir(out)
    assert json.loads((runs.iteration(1).train / "result.json").read_text())["num_processes"] == 2
    assert not list(runs.iteration(0).root.glob("samples.shard-*"))  # merged, then removed
    steps = [m for m in runs.metrics() if m["stage"] == "train_step"]
    assert [m["iteration"] for m in steps] == [0] * (len(steps) // 2) + [1] * (len(steps) // 2)


def _workers_of(pattern: str, *, launchers: bool = False) -> list[int]:
    """Pids of processes whose command line contains `pattern`: the launched workers (and
    with `launchers`, the torchrun agents that started them)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if pattern in cmdline and (launchers or "torch.distributed.run" not in cmdline):
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_killed_worker_fails_the_stage_and_the_rerun_finishes_it(
    finished_run: Path, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "tiny.yaml", *PROCESSES)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli_run(config, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    shard = out / "iter_0" / "samples.shard-1-of-2.jsonl"
    _wait_for(lambda: shard.exists(), proc)  # worker 1 has written its first question
    victims = [p for p in _workers_of(f"--out {out / 'iter_0'}") if p != proc.pid]
    assert victims
    os.kill(victims[-1], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "stage iter_0/sample: a launched process failed (exit status" in stderr
    assert "The finished shards are kept" in stderr
    kept = list(out.glob("iter_0/samples.shard-*-of-2.jsonl"))
    assert kept and not RunDir(out).is_done("iter_0/sample")
    done = subprocess.run(_cli_run(config, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_within(finished_run, out)


@pytest.mark.slow
def test_a_killed_driver_leaves_no_worker_and_the_rerun_matches(
    finished_run: Path, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "tiny.yaml", *PROCESSES)
    out = tmp_path / "driver"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli_run(config, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    log = RunDir(out).iteration(0).train / "train_log.jsonl"
    _wait_for(lambda: log.exists() and log.stat().st_size > 0, proc)  # training processes run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while _workers_of(str(out), launchers=True) and time.monotonic() < deadline:
        time.sleep(0.2)  # the launcher and its workers follow the driver (PR_SET_PDEATHSIG)
    assert _workers_of(str(out), launchers=True) == []
    done = subprocess.run(_cli_run(config, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_within(finished_run, out)
