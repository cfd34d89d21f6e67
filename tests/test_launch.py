"""`launch.mode: processes`: every stage in processes of its own, with the inline run's results."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from irpo.config import load_config
from irpo.errors import IrpoError
from irpo.launch import LaunchPlan, StageLauncher, train_command, workers_command
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


def _launcher(tmp_path: Path, gpus: int, workers: int, train: int) -> StageLauncher:
    plan = LaunchPlan(gpus=gpus, sampling_workers=workers, tensor_parallel_size=1,
                      train_processes=train, accelerate_config=None)  # fmt: skip
    return StageLauncher(plan, tmp_path, None)


def test_stages_that_share_processes_run_in_one_launch(tmp_path: Path) -> None:
    run_dir = tmp_path
    cfg = str(run_dir / "config.yaml")
    one = _launcher(run_dir, gpus=0, workers=1, train=1)
    ev = one.eval_step("eval_1", "M1", run_dir / "eval_1.json")
    sa = one.sample_step("iter_1/sample", 1, "M1", run_dir / "iter_1")
    ref = one.reference_step("iter_0/reference", "M0", Path("p.jsonl"), Path("r.jsonl"))
    tr = one.train_step("iter_0/train", 0, "M0", Path("p.jsonl"), Path("tr"), Path("r.jsonl"))
    sft = one.train_step("iter_0/train", 0, "M0", Path("e.jsonl"), Path("tr"), None,
                         after_driver=True)  # fmt: skip
    assert [one.joins(a, b) for a, b in ((ev, sa), (ref, tr), (tr, ev), (sa, ref), (ref, sft))] == [
        True, True, True, False, False,
    ]  # fmt: skip
    # one process: the reference pass, training, then the new model's eval and sample
    assert one.command([ref, tr, ev, sa]) == [
        sys.executable, "-m", "irpo.cli",
        "reference", "p.jsonl", "--model", "M0", "--config", cfg, "--out", "r.jsonl", "--then",
        "train", "p.jsonl", "--model", "M0", "--out", "tr", "--config", cfg, "--iteration", "0",
        "--reference", "r.jsonl", "--then",
        "eval", "--model", "M1", "--config", cfg, "--out", str(run_dir / "eval_1.json"),
        "--shard", "0/1", "--then",
        "sample", "--model", "M1", "--config", cfg, "--out", str(run_dir / "iter_1"),
        "--iteration", "1", "--shard", "0/1",
    ]  # fmt: skip
    # W workers under torchrun: each draws its eval shard, then its sample shard
    two = _launcher(run_dir, gpus=0, workers=2, train=2)
    assert [two.joins(a, b) for a, b in ((ev, sa), (ref, tr), (tr, ev))] == [True, False, False]
    cmd = two.command([ev, sa])
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       "--nproc-per-node=2"]  # fmt: skip
    assert cmd[cmd.index("irpo.cli") + 1 :] == [
        "eval", "--model", "M1", "--config", cfg, "--out", str(run_dir / "eval_1.json"),
        "--shard", "auto", "--then",
        "sample", "--model", "M1", "--config", cfg, "--out", str(run_dir / "iter_1"),
        "--iteration", "1", "--shard", "auto",
    ]  # fmt: skip
    # GPUs: training never shares its processes with sampling (GPU memory passes by exiting)
    gpu = _launcher(run_dir, gpus=1, workers=1, train=1)
    assert [gpu.joins(a, b) for a, b in ((ev, sa), (ref, tr), (tr, ev))] == [True, True, False]


def test_chained_commands_share_one_process_and_stop_at_the_first_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from irpo.cli import main, split_commands

    assert split_commands(["a", "-x", "--then", "b", "--then", "c", "1"]) == [
        ["a", "-x"], ["b"], ["c", "1"],
    ]  # fmt: skip
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1 + 1?", "answer": "2"}\n')
    check = ["check-data", "--task", "custom", "--source", str(data)]
    with pytest.raises(SystemExit) as done:
        main([*check, "--then", *check])
    assert done.value.code == 0
    assert capsys.readouterr().out.count(f"task custom, source {data}") == 2
    with pytest.raises(SystemExit) as failed:
        main(["check-data", "--task", "nosuchtask", "--then", *check])
    assert failed.value.code == 2
    assert "task custom" not in capsys.readouterr().out  # the second command did not run


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
    assert "stage eval_0 + iter_0/sample: a launched process failed (exit status" in stderr
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


ONE_EACH = ("launch.mode=processes", "launch.sampling_workers=1", "launch.train_processes=1")


@pytest.mark.slow
def test_one_worker_and_one_trainer_chain_the_stages_of_a_model(
    finished_run: Path, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "tiny.yaml", *ONE_EACH)
    out = tmp_path / "chained"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(_cli_run(config, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_within(finished_run, out, atol=0.0)  # one training process: bit for bit
    # three launches: M_0's eval and sample; per iteration, the reference pass, training and
    # the new model's eval (and sample, but for the last)
    launches = [ln.split("stage ", 1)[1].split(": ")[0] for ln in done.stderr.splitlines()
                if "INFO irpo.launch: stage" in ln and "processes finished" not in ln]  # fmt: skip
    assert launches == [
        "eval_0 + iter_0/sample",
        "iter_0/reference + iter_0/train + eval_1 + iter_1/sample",
        "iter_1/reference + iter_1/train + eval_2",
    ]
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "eval_0", "iter_0-reference", "iter_1-reference",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_chain_killed_after_training_resumes_to_the_same_results(
    finished_run: Path, tmp_path: Path
) -> None:
    config = _write_config(tmp_path / "tiny.yaml", *ONE_EACH)
    out = tmp_path / "killed-chain"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli_run(config, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    runs = RunDir(out)
    shard = out / "evals" / "model_1.greedy.shard-0-of-1.jsonl"
    _wait_for(lambda: shard.exists(), proc)  # training 0 finished; M_1's eval has begun
    victims = [p for p in _workers_of(f"--out {runs.iteration(0).train}") if p != proc.pid]
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "stage iter_0/reference + iter_0/train + eval_1 + iter_1/sample: a launched" in stderr
    assert (runs.iteration(0).train / "result.json").exists()
    assert not runs.is_done("iter_0/train")  # recorded by the driver only after the launch
    done = subprocess.run(_cli_run(config, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training in" in done.stderr and "is already finished" in done.stderr
    _assert_same_within(finished_run, out, atol=0.0)


def test_the_commands_for_several_machines(tmp_path: Path) -> None:
    srun = ("srun", "--nodes=2", "--ntasks-per-node=1")
    gpu = LaunchPlan(gpus=8, sampling_workers=8, tensor_parallel_size=1, train_processes=8,
                     accelerate_config="configs/accelerate/fsdp.yaml", machines=2,
                     node_launcher=srun, main_process_ip="node-0", main_process_port=29500)  # fmt: skip
    inner = (
        f"exec {sys.executable} -m accelerate.commands.launch --config_file "
        "configs/accelerate/fsdp.yaml --num_machines 2 --num_processes 16 --main_process_ip "
        'node-0 --main_process_port 29500 --machine_rank "${SLURM_NODEID}" "$@"'
    )
    assert train_command(gpu, ["train", "p.jsonl"], tmp_path) == [
        *srun, "bash", "-c", inner, "irpo-node", "-m", "irpo.cli", "train", "p.jsonl",
    ]  # fmt: skip
    launcher = StageLauncher(gpu, tmp_path, None)
    ev = launcher.eval_step("eval_0", "M0", tmp_path / "eval_0.json")
    workers = (
        f"exec {sys.executable} -m torch.distributed.run --nnodes=2 --nproc-per-node=8 "
        '--master-addr=node-0 --master-port=29501 --node-rank "${SLURM_NODEID}" "$@"'
    )
    assert launcher.command([ev])[:7] == [*srun, "bash", "-c", workers, "irpo-node"]
    assert gpu.sampling_shards == 16  # shard RANK of 2 x 8, RANK counted over both machines
    # a config for several machines names the launcher that starts them
    with pytest.raises(IrpoError, match=r"launch\.machines \(2\) needs launch\.node_launcher"):
        load_config(None, ["launch.mode=processes", "launch.machines=2"])
    cfg = load_config(None, ["launch.mode=processes", "launch.machines=2",
                             "launch.node_launcher=[srun, --nodes=2, --ntasks-per-node=1]"])  # fmt: skip
    plan = LaunchPlan.of(cfg, gpus=8)
    assert (plan.machines, plan.node_launcher, plan.main_process_ip) == (
        2,
        srun,
        socket.gethostname(),
    )


def test_a_launched_command_that_does_not_see_the_run_directory_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from irpo.cli import main
    from irpo.launch import RUN_TOKEN, run_check_env, write_run_token

    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1 + 1?", "answer": "2"}\n')
    check = ["check-data", "--task", "custom", "--source", str(data)]
    token = write_run_token(tmp_path)
    for key, value in run_check_env(tmp_path, token).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as seen:
        main(check)
    assert seen.value.code == 0
    unseen = tmp_path / "not-mounted"
    for key, value in run_check_env(unseen, token).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as stopped:
        main(check)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"error: host {socket.gethostname()} does not see the run directory {unseen}: cannot "
        f"read {unseen / RUN_TOKEN} (No such file or directory); the run directory must be on "
        "a file system that every machine mounts at the same path (docs/DISTRIBUTED.md)\n"
    )
