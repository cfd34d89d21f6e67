"""How `irpo run` launches a stage in processes of its own (`launch.mode: processes`).

Nothing here schedules or talks to processes itself: the launchers are PyTorch's and
accelerate's.

- Sampling and evaluation: `torch.distributed.run` (torchrun) starts W workers of the stage's
  CLI command (`irpo sample` / `irpo eval` with `--shard auto`); each takes shard RANK of
  WORLD_SIZE and the GPUs of its local rank (`tensor_parallel_size` GPUs each, passed to vLLM),
  and appends to its own shard file. The driver merges the shards with `irpo.sampling.shards`.
- Reference log-probs: one process (`irpo reference`).
- Training: `accelerate launch` with `launch.train_processes` processes and
  `launch.accelerate_config` (DDP, FSDP, ZeRO-3 under configs/accelerate/); on a machine
  without GPUs, torchrun with accelerate's CPU flag (a gloo process group), as accelerate does.

GPU memory passes from one stage to the next by the stage's processes ending. A worker that
fails makes the stage fail with that worker's own last error lines and exit status; the shards
already written stay, so the rerun does only what is missing. The launcher's process dies with
the driver (Linux: PR_SET_PDEATHSIG), and the workers with the launcher, each at its next safe
point (`irpo.preemption`). Every launched process keeps the run's lock open, so no second run
can start while any of them still writes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from irpo import preemption
from irpo.config import RunConfig
from irpo.errors import IrpoError

THEN = "--then"
"""Separates the commands that one process runs in turn (`irpo.cli.main`)."""

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchPlan:
    """How many processes each kind of stage gets, checked against the machine."""

    gpus: int
    """GPUs visible to the driver (0: a CPU machine)."""
    sampling_workers: int
    tensor_parallel_size: int
    train_processes: int
    """Training processes of each machine."""
    accelerate_config: str | None
    machines: int = 1
    """Machines that train together; more than 1: `node_launcher` starts one launcher on each."""
    node_launcher: tuple[str, ...] = ()
    machine_rank_env: str = "SLURM_NODEID"
    main_process_ip: str = "127.0.0.1"
    main_process_port: int = 29500

    @property
    def sampling_shards(self) -> int:
        """Shard files of a sampling or evaluation pass: one per worker of every machine."""
        return self.machines * self.sampling_workers

    @classmethod
    def of(cls, config: RunConfig, gpus: int | None = None, cpus: int | None = None) -> LaunchPlan:
        """The plan for `config` on this machine; an error naming the numbers when it asks for
        more GPUs (or, without GPUs, more processes than CPU cores) than there are."""
        launch = config.launch
        gpus = visible_gpus() if gpus is None else gpus
        cpus = (os.cpu_count() or 1) if cpus is None else cpus
        tp = int(config.sampling.vllm.get("tensor_parallel_size", 1))
        if gpus:
            workers = launch.sampling_workers or max(1, gpus // tp)
            train = launch.train_processes or gpus
            if workers * tp > gpus:
                raise IrpoError(
                    f"launch.sampling_workers ({workers}) x sampling.vllm.tensor_parallel_size "
                    f"({tp}) needs {workers * tp} GPUs; {gpus} are visible"
                )
            if train > gpus:
                raise IrpoError(
                    f"launch.train_processes ({train}) is more than the {gpus} visible GPUs"
                )
        else:
            workers = launch.sampling_workers or 1
            train = launch.train_processes or 1
            for key, n in (("sampling_workers", workers), ("train_processes", train)):
                if n > cpus:
                    raise IrpoError(
                        f"launch.{key} ({n}) is more than the {cpus} CPU cores of this machine "
                        "(no GPU is visible)"
                    )
        if launch.accelerate_config is not None and not Path(launch.accelerate_config).is_file():
            raise IrpoError(f"launch.accelerate_config: {launch.accelerate_config} not found")
        return cls(
            gpus,
            workers,
            tp,
            train,
            launch.accelerate_config,
            machines=launch.machines,
            node_launcher=tuple(launch.node_launcher or ()),
            machine_rank_env=launch.machine_rank_env,
            main_process_ip=launch.main_process_ip or socket.gethostname(),
            main_process_port=launch.main_process_port,
        )


def visible_gpus() -> int:
    """CUDA devices this process may use (without initialising CUDA in it)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# --------------------------------------------------------------------------- commands


def cli(*args: str) -> list[str]:
    """The `irpo` command line run by the current interpreter."""
    return ["-m", "irpo.cli", *args]


def workers_command(nproc: int, args: Sequence[str], log_dir: Path) -> list[str]:
    """torchrun starting `nproc` copies of an `irpo` command on this machine; one copy is
    started directly, as rank 0 of 1 (torchrun's agent would cost a second interpreter)."""
    if nproc == 1:
        return ["env", "RANK=0", "WORLD_SIZE=1", "LOCAL_RANK=0", sys.executable, *cli(*args)]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--log-dir={log_dir}",
        "--redirects=3",
        "--tee=3",
        *cli(*args),
    ]


def train_command(plan: LaunchPlan, args: Sequence[str], log_dir: Path) -> list[str]:
    """`accelerate launch` on GPUs; on CPUs torchrun with accelerate's CPU flag (gloo). One
    process with accelerate's defaults is started directly (accelerate needs no launcher then).
    Several machines: `machines_command`."""
    if plan.machines > 1:
        return machines_command(plan, args)
    if plan.train_processes == 1 and plan.accelerate_config is None:
        return [sys.executable, *cli(*args)]
    if plan.gpus:
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        if plan.accelerate_config is not None:
            cmd += ["--config_file", plan.accelerate_config]
        cmd += ["--num_processes", str(plan.train_processes)]
        if plan.train_processes > 1 and plan.accelerate_config is None:
            cmd += ["--multi_gpu"]
        return [*cmd, *cli(*args)]
    return workers_command(plan.train_processes, args, log_dir)


def machines_command(plan: LaunchPlan, args: Sequence[str]) -> list[str]:
    """Training on several machines: on each, `accelerate launch --num_machines N
    --machine_rank R --main_process_ip ...` with `train_processes` processes (on GPUs), or
    torchrun `--nnodes N --node-rank R` with accelerate's CPU flag (without GPUs)."""
    n, per = plan.machines, plan.train_processes
    if not plan.gpus:
        return _on_every_machine(plan, _torchrun_nodes(plan, per, plan.main_process_port), args)
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    if plan.accelerate_config is not None:
        launcher += ["--config_file", plan.accelerate_config]
    launcher += [
        "--num_machines", str(n), "--num_processes", str(n * per),
        "--main_process_ip", plan.main_process_ip,
        "--main_process_port", str(plan.main_process_port),
    ]  # fmt: skip
    if plan.accelerate_config is None:
        launcher += ["--multi_gpu"]
    return _on_every_machine(plan, [*launcher, "--machine_rank"], args)


def machines_workers_command(plan: LaunchPlan, args: Sequence[str]) -> list[str]:
    """Sampling workers on several machines: torchrun `--nnodes N --node-rank R` on each, with
    `sampling_workers` workers per machine; worker RANK takes shard RANK of N x workers."""
    port = plan.main_process_port + 1  # not the port the last training used
    return _on_every_machine(plan, _torchrun_nodes(plan, plan.sampling_workers, port), args)


def _torchrun_nodes(plan: LaunchPlan, per: int, port: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nnodes={plan.machines}",
        f"--nproc-per-node={per}", f"--master-addr={plan.main_process_ip}",
        f"--master-port={port}", "--node-rank",
    ]  # fmt: skip


def _on_every_machine(plan: LaunchPlan, launcher: Sequence[str], args: Sequence[str]) -> list[str]:
    """`node_launcher` (e.g. `srun --nodes=N --ntasks-per-node=1`) running `launcher` on every
    machine, followed by the machine's rank (read there, from `machine_rank_env`) and the
    `irpo` command."""
    inner = f'exec {shlex.join(launcher)} "${{{plan.machine_rank_env}}}" "$@"'
    return [*plan.node_launcher, "bash", "-c", inner, "irpo-node", *cli(*args)]


def run_processes(
    stage: str,
    cmd: Sequence[str],
    log_dir: Path,
    *,
    cpu: bool = False,
    keep_fds: Sequence[int] = (),
    run_check: dict[str, str] | None = None,
) -> None:
    """Run a launcher to its end; a failure raises with the failing worker's last lines.

    `run_check` (`run_check_env`) makes every launched command check first that its machine
    sees the run directory.

    A stop asked of the driver (SIGTERM, SIGINT) is passed on to the launcher, which passes it
    to its workers; they stop at their next safe point and the stage raises `Preempted`.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    run_check = run_check or {}
    env = {**os.environ, "IRPO_LAUNCHED": "1", "TOKENIZERS_PARALLELISM": "false", **run_check}
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    log.info("stage %s: %s", stage, " ".join(cmd))
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
        pass_fds=tuple(keep_fds),
    )
    assert proc.stderr is not None
    tail: list[str] = []
    with preemption.passing_on(lambda signum: proc.send_signal(signal.SIGTERM)):
        for line in proc.stderr:  # the launcher's and (tee) the workers' messages, live
            sys.stderr.write(line)
            tail = [*tail[-59:], line.rstrip("\n")]
        status = proc.wait()
    asked = preemption.requested()
    if asked is not None:  # passed on above, or the launcher got it too (same process group)
        raise preemption.Preempted(asked, f"during stage {stage} (its processes stopped)")
    if status != 0:
        raise IrpoError(
            f"stage {stage}: a launched process failed (exit status {status}); its last "
            f"messages:\n{_worker_errors(log_dir, tail)}\nThe finished shards are kept: run the "
            "same command again to do the rest"
        )
    log.info("stage %s: processes finished in %.1fs", stage, time.perf_counter() - started)


def _worker_errors(log_dir: Path, tail: list[str]) -> str:
    """The `error:` lines and tracebacks' last lines of the failed workers, else the tail."""
    lines = []
    for path in sorted(log_dir.rglob("stderr.log")):
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        errors = [ln for ln in text if ln.startswith("error: ") or "Error: " in ln]
        if errors:
            lines.append(f"  [{path.parent.name}] {errors[-1]}")
    return "\n".join(lines) if lines else "\n".join(f"  {ln}" for ln in tail[-15:])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask the kernel to send SIGTERM to this process when its parent (the driver) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher outlives a killed driver, as it would elsewhere


# --------------------------------------------------------------------------- the shared run directory

RUN_TOKEN = "run.token"
"""A file the driver writes in the run directory at start; every worker reads it back."""
RUN_DIR_ENV = "IRPO_RUN_DIR"
RUN_TOKEN_ENV = "IRPO_RUN_TOKEN"


def write_run_token(run_root: Path) -> str:
    """Write a new token (host, process, random) into RUN/run.token; return it."""
    token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
    (run_root / RUN_TOKEN).write_text(token + "\n", encoding="utf-8")
    return token


def run_check_env(run_root: Path, token: str) -> dict[str, str]:
    """The environment that makes a launched `irpo` command check the run directory first."""
    return {RUN_DIR_ENV: str(run_root), RUN_TOKEN_ENV: token}


def check_run_dir(run_root: str | Path, token: str) -> None:
    """In a worker: raise, naming this host and the path, unless it sees the run directory the
    driver wrote (the same token, so not another folder of the same name on a local disk)."""
    path = Path(run_root) / RUN_TOKEN
    host = socket.gethostname()
    where = (
        "; the run directory must be on a file system that every machine mounts at the same "
        "path (docs/DISTRIBUTED.md)"
    )
    try:
        seen = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise IrpoError(
            f"host {host} does not see the run directory {run_root}: cannot read {path} "
            f"({e.strerror}){where}"
        ) from None
    if seen != token:
        raise IrpoError(
            f"host {host} sees another run directory at {run_root}: {path} holds {seen!r}, "
            f"not the driver's {token!r}{where}"
        )


def check_run_dir_from_env() -> None:
    """In a launched command: the check of `check_run_dir`, when the driver asked for it."""
    root = os.environ.get(RUN_DIR_ENV)
    if root is not None:
        check_run_dir(root, os.environ.get(RUN_TOKEN_ENV, ""))


# --------------------------------------------------------------------------- in a worker


def worker_rank() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) of a process that a launcher started, else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return (
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
    )


_WORKER: list[bool] = []


def become_worker(tensor_parallel_size: int) -> tuple[int, int]:
    """In a sampling worker: die with the launcher, take this rank's GPUs; (rank, world)."""
    where = worker_rank()
    if where is None:
        raise IrpoError("--shard auto: not started by a launcher (RANK / WORLD_SIZE unset)")
    rank, world, local = where
    if _WORKER:  # a second command chained in the same worker (`--then`): its GPUs are set
        return rank, world
    _WORKER.append(True)
    _die_with_parent()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else None
    first = local * tensor_parallel_size
    if devices is not None:
        mine = devices[first : first + tensor_parallel_size]
    else:
        mine = [str(i) for i in range(first, first + tensor_parallel_size)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
    return rank, world


# --------------------------------------------------------------------------- the driver's side


@dataclass(frozen=True)
class Step:
    """One stage's command, as a launcher runs it: `kind` says which processes it needs."""

    stage: str
    """The stage's name in the run's manifest (e.g. "iter_0/sample")."""
    kind: str
    """"workers" (sample, eval: one per sampling worker), "one" (reference) or "train"."""
    args: tuple[str, ...]
    """The `irpo` command line, without `--shard` for workers (the launch decides it)."""
    after_driver: bool = False
    """The driver writes this stage's inputs just before it (SFT examples): it starts a launch."""


class StageLauncher:
    """Starts the stages of one run in processes of their own; the driver merges and records.

    Every command reads the run's resolved config (RUN/config.yaml), so a worker computes
    exactly what the same stage computes inline. Consecutive stages that need the same
    processes run in one launch, their commands joined by `--then` (`irpo.cli`): every
    iteration's eval and sample (the same model: it is loaded once), and on a machine with one
    direct training process, the reference pass with training. Without GPUs, and with one
    sampling worker and one training process, training is followed in the same process by the
    new model's eval and sample too (no GPU memory to hand over). Each stage is still recorded
    on its own: a launch that stops part-way leaves the finished stages' outputs, and the rerun
    starts at the first stage not recorded.
    """

    def __init__(
        self,
        plan: LaunchPlan,
        run_root: Path,
        lock_fd: int | None,
        *,
        token: str | None = None,
        sampling_elsewhere: bool = False,
    ) -> None:
        self.plan = plan
        self.root = run_root
        self.config = str(run_root / "config.yaml")
        self.keep_fds = () if lock_fd is None else (lock_fd,)
        self.run_check = {} if token is None else run_check_env(run_root, token)
        """Every launched command first checks that it sees the run directory."""
        self.sampling_elsewhere = sampling_elsewhere
        """Sampling and evaluation do not run in launched processes (`launch.mode: ray`)."""

    def _logs(self, stage: str) -> Path:
        return self.root / "logs" / stage.replace("/", "-")

    # the steps
    def sample_step(self, stage: str, t: int, model: str, out_dir: Path) -> Step:
        """Each worker appends its shard to OUT/samples.shard-I-of-W.jsonl."""
        args = ("sample", "--model", model, "--config", self.config, "--out", str(out_dir))
        return Step(stage, "workers", (*args, "--iteration", str(t)))

    def eval_step(self, stage: str, model: str, out_path: Path) -> Step:
        """Each worker draws its shard of the evaluation samples beside OUT."""
        args = ("eval", "--model", model, "--config", self.config, "--out", str(out_path))
        return Step(stage, "workers", args)

    def reference_step(self, stage: str, model: str, pairs: Path, out: Path) -> Step:
        """One process: the reference log-probs of every pair."""
        args = ("reference", str(pairs), "--model", model, "--config", self.config)
        return Step(stage, "one", (*args, "--out", str(out)))

    def train_step(
        self,
        stage: str,
        t: int,
        model: str,
        data: Path,
        out: Path,
        reference: Path | None,
        *,
        after_driver: bool = False,
    ) -> Step:
        """`launch.train_processes` training processes (accelerate launch; gloo on CPUs)."""
        args = ["train", str(data), "--model", model, "--out", str(out), "--config", self.config]
        args += ["--iteration", str(t)]
        if reference is not None:
            args += ["--reference", str(reference)]
        return Step(stage, "train", tuple(args), after_driver)

    @property
    def _direct_training(self) -> bool:
        """Training is one process started directly (no launcher, no process group)."""
        plan = self.plan
        return plan.machines == 1 and plan.train_processes == 1 and plan.accelerate_config is None

    def joins(self, first: Step, then: Step) -> bool:
        """Whether `then` can run in the processes that run `first`, right after it."""
        if then.after_driver or (self.sampling_elsewhere and "workers" in (first.kind, then.kind)):
            return False
        if (first.kind, then.kind) == ("workers", "workers"):
            return True
        if (first.kind, then.kind) == ("one", "train"):
            return self._direct_training
        if first.kind == "train" and then.kind == "workers":
            return not self.plan.gpus and self._direct_training and self.plan.sampling_workers == 1
        return False

    def command(self, steps: Sequence[Step]) -> list[str]:
        """The launcher command that runs `steps` in order, in one set of processes."""
        kinds = {s.kind for s in steps}
        launched = "train" in kinds or "one" in kinds
        shard = "0/1" if launched else "auto"  # a train launch takes workers only when W == 1
        args: list[str] = []
        for step in steps:
            if args:
                args.append(THEN)
            args += [*step.args, *(("--shard", shard) if step.kind == "workers" else ())]
        logs = self._logs(steps[0].stage)
        if "train" in kinds:
            return train_command(self.plan, args, logs)
        if launched:
            return [sys.executable, *cli(*args)]
        if self.plan.machines > 1:
            return machines_workers_command(self.plan, args)
        return workers_command(self.plan.sampling_workers, args, logs)

    def launch(self, steps: Sequence[Step]) -> None:
        """Run `steps` in one launch; a failure names every stage in it."""
        label = " + ".join(s.stage for s in steps)
        run_processes(
            label,
            self.command(steps),
            self._logs(steps[0].stage),
            cpu="train" in {s.kind for s in steps} and not self.plan.gpus,
            keep_fds=self.keep_fds,
            run_check=self.run_check,
        )
