"""The training loop that IRPO, DPO and SFT share: plain PyTorch + `accelerate`.

AdamW, warmup then a constant / cosine / linear learning rate, gradient accumulation (the global
batch is `TrainConfig.batch_size` examples = micro_batch_size x accumulation x processes),
gradient clipping, mixed precision, gradient checkpointing, LoRA (merged into the saved model),
a metrics row per logged step, resumable states and an atomic final checkpoint.

The same code runs on one CPU and under `accelerate launch` (DDP, FSDP, DeepSpeed; see
docs/DISTRIBUTED.md): the model is wrapped by `accelerator.prepare`, the data plan is a pure
function of the step (irpo.train.plan), and every process takes its share of each global batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor

from irpo import preemption
from irpo.config import ModelConfig, TrainConfig
from irpo.errors import IrpoError
from irpo.records import read_json, write_json
from irpo.tracking import ProgressFactory
from irpo.train.allocator import low_fragmentation
from irpo.train.checkpoint import (
    TrainDir,
    read_settings,
    save_model_atomic,
    save_state,
    truncate_log,
)
from irpo.train.objectives import Objective
from irpo.train.plan import BatchPlan, make_plan
from irpo.train.scoring import SequenceScorer
from irpo.train.setup import (
    configure_deepspeed,
    forget_previous_training,
    load_policy,
    make_optimizer,
    make_scheduler,
    resolve_mixed_precision,
)

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, Any]], None]
"""Receives each logged metrics row (main process only), e.g. to forward it to a tracker."""
Prepare = Callable[[Any, Any, TrainDir], list[Any]]
"""(accelerator, prepared scorer, train dir) -> the examples to train on (e.g. with references)."""

# Settings that do not change what is computed: a resumed run may change them.
_RESUMABLE_CHANGES = {"log_every", "save_every", "gradient_checkpointing"}


@dataclass
class TrainResult:
    """A finished training: where its model is and how it went."""

    model_dir: Path
    steps: int
    epochs: float
    num_examples: int
    seconds: float
    log_path: Path
    final_metrics: dict[str, float] = field(default_factory=dict)
    num_processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_dir"], d["log_path"] = str(self.model_dir), str(self.log_path)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        return cls(**{**d, "model_dir": Path(d["model_dir"]), "log_path": Path(d["log_path"])})


@dataclass
class Job:
    """What to train: the examples, how a micro-batch is scored, and one-off preparation."""

    kind: str
    examples: Sequence[Any]
    objective: Objective
    length_of: Callable[[Any], int]
    fingerprint: str
    prepare: Prepare | None = None


def fit(
    job: Job,
    model_path: str,
    cfg: TrainConfig,
    output_dir: str | Path,
    *,
    seed: int,
    model_cfg: ModelConfig | None = None,
    resume: bool = True,
    log_fn: LogFn | None = None,
    progress: ProgressFactory | None = None,
) -> TrainResult:
    """Train `model_path` on `job`, writing states, logs and the final model to `output_dir`.

    With `resume`, a finished training in `output_dir` is returned as is and an interrupted one
    continues from its last saved state (with the same result as an uninterrupted run).
    Without it, what an earlier training wrote there is removed first.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    tdir = TrainDir(output_dir)
    if resume and tdir.result.exists():
        log.info("training in %s is already finished", tdir.root)
        return TrainResult.from_dict(read_json_dict(tdir.result))
    forget_previous_training()
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(
            cfg.mixed_precision,
            model_path,
            sequences=cfg.micro_batch_size * (1 if job.kind == "sft" else 2),
            length=_mean_length(job),
            trust_remote_code=bool(model_cfg and model_cfg.trust_remote_code),
        ),
        step_scheduler_with_optimizer=False,  # one scheduler step per optimizer step, any P
    )
    if not resume and accelerator.is_main_process:
        tdir.clear()
    accelerator.wait_for_everyone()
    plan = make_plan(
        len(job.examples),
        batch_size=cfg.batch_size,
        micro_batch_size=cfg.micro_batch_size,
        num_processes=accelerator.num_processes,
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        seed=seed,
    )
    accelerator.gradient_accumulation_steps = plan.accumulation_steps
    settings = _settings(job, model_path, cfg, seed, model_cfg)
    _check_settings(tdir, settings, accelerator.is_main_process)

    set_seed(seed)
    model = load_policy(model_path, cfg, model_cfg)
    scorer = SequenceScorer(model, response_only=cfg.response_only_logits)
    optimizer = make_optimizer(scorer, cfg)
    scheduler = make_scheduler(optimizer, cfg, plan.total_steps)
    configure_deepspeed(accelerator, cfg, plan)
    scorer, optimizer, scheduler = accelerator.prepare(scorer, optimizer, scheduler)
    examples = list(job.prepare(accelerator, scorer, tdir)) if job.prepare else list(job.examples)

    start_step = _resume_state(accelerator, tdir) if resume else 0
    loop = _Loop(accelerator, scorer, optimizer, scheduler, plan, job, examples, cfg, tdir)
    started = time.perf_counter()
    with low_fragmentation(model):
        final_metrics = loop.run(start_step, log_fn, progress)

    _save_final(accelerator, scorer, model_path, cfg, tdir)
    result = TrainResult(
        model_dir=tdir.model,
        steps=plan.total_steps,
        epochs=plan.epoch_at(plan.total_steps),
        num_examples=len(examples),
        seconds=time.perf_counter() - started,
        log_path=tdir.log,
        final_metrics=final_metrics,
        num_processes=accelerator.num_processes,
    )
    if accelerator.is_main_process:
        write_json(tdir.result, result.to_dict())
        _remove_states(tdir)
    accelerator.wait_for_everyone()
    log.info("training finished: %d steps, model in %s", plan.total_steps, tdir.model)
    return result


class _Loop:
    """The optimizer steps of one training (state shared by the step, logging and saving)."""

    def __init__(
        self,
        accelerator: Any,
        scorer: Any,
        optimizer: Any,
        scheduler: Any,
        plan: BatchPlan,
        job: Job,
        examples: list[Any],
        cfg: TrainConfig,
        tdir: TrainDir,
    ) -> None:
        self.acc, self.scorer, self.optimizer, self.scheduler = (
            accelerator,
            scorer,
            optimizer,
            scheduler,
        )
        self.plan, self.job, self.examples, self.cfg, self.tdir = plan, job, examples, cfg, tdir
        self.lengths = [job.length_of(e) for e in examples]
        self.window: dict[str, Tensor] = {}
        self.window_steps = 0
        self.window_tokens = 0
        self.window_seconds = 0.0
        self.last_saved = -1
        self.last_row: dict[str, float] = {}
        self.log_file: TextIO | None = None

    def run(
        self, start_step: int, log_fn: LogFn | None, progress: ProgressFactory | None
    ) -> dict[str, float]:
        update = None
        if progress is not None and self.acc.is_main_process:
            update = progress(f"train ({self.job.kind})", self.plan.total_steps)
        if update and start_step:
            update(start_step)
        self.last_saved = start_step
        self.scorer.train()
        if self.acc.is_main_process:
            self.tdir.root.mkdir(parents=True, exist_ok=True)
            # Kept open and flushed per row: a per-row open + fsync costs ~1.5 ms, which is a
            # visible share of a tiny model's step. A row cut short by a crash is dropped on resume.
            self.log_file = self.tdir.log.open("a", encoding="utf-8")
        try:
            self._steps(start_step, log_fn, update)
        finally:
            if self.log_file is not None:
                self.log_file.close()
        return self.last_row

    def _steps(self, start_step: int, log_fn: LogFn | None, update: Any) -> None:
        for step in range(start_step, self.plan.total_steps):
            self._step(step)
            done = step + 1
            if (
                self.cfg.save_every
                and done % self.cfg.save_every == 0
                and done < self.plan.total_steps
            ):
                save_state(self.acc, self.tdir, done)
                self.last_saved = done
            if done % self.cfg.log_every == 0 or done == self.plan.total_steps:
                self.last_row = self._log_window(done, log_fn)
            if update:
                update(1, loss=f"{self.last_row.get('loss', float('nan')):.4f}")
            if done < self.plan.total_steps and self._stop_requested():
                self._stop(done)

    def _stop_requested(self) -> bool:
        """Whether any process was asked to stop (all processes agree, so all stop together)."""
        asked = preemption.requested() is not None
        if self.acc.num_processes == 1:
            return asked
        flag = torch.tensor([1.0 if asked else 0.0], device=self.acc.device)
        return bool(self.acc.reduce(flag, reduction="sum").item() > 0)

    def _stop(self, done: int) -> None:
        """Save a resumable state at this optimizer step (unless one is there) and stop."""
        started = time.perf_counter()
        if self.last_saved != done:
            save_state(self.acc, self.tdir, done)
            self.last_saved = done
        where = (
            f"after optimizer step {done} of {self.plan.total_steps} (state saved in "
            f"{self.tdir.state_dir(done)} in {time.perf_counter() - started:.1f}s)"
        )
        log.warning("training stopped %s", where)
        raise preemption.Preempted(preemption.requested() or signal.SIGTERM, where)

    def _step(self, step: int) -> None:
        """One optimizer step: forward/backward over this process's micro-batches, then update."""
        started = time.perf_counter()
        device = self.acc.device
        batches = self.plan.local_micro_batches(
            step, self.acc.process_index, self.lengths.__getitem__
        )
        sums: dict[str, Tensor] = {}
        for batch in batches:
            with self.acc.accumulate(self.scorer):
                out = self.job.objective(self.scorer, [self.examples[i] for i in batch], device)
                self._stop_if_not_finite(out.loss, step)
                self.acc.backward(out.loss)  # divided by the accumulation steps
            for k, v in out.metrics.items():
                sums[k] = sums.get(k, 0.0) + v.detach().double() / len(batches)
            self.window_tokens += out.num_tokens
        sums["lr"] = torch.tensor(
            self.scheduler.get_last_lr()[0], dtype=torch.float64, device=device
        )
        # Clipping at inf measures the norm without changing anything.
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else math.inf
        norm = self.acc.clip_grad_norm_(self.scorer.parameters(), max_norm)
        if norm is not None:  # DeepSpeed reports it only after its step
            sums["grad_norm"] = torch.as_tensor(norm, device=device).detach().double()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        for k, v in sums.items():
            self.window[k] = (
                self.window.get(k, torch.zeros((), dtype=torch.float64, device=device)) + v
            )
        self.window_steps += 1
        self.window_seconds += time.perf_counter() - started

    def _stop_if_not_finite(self, loss: Tensor, step: int) -> None:
        """Stop before a NaN/inf loss reaches the optimizer; keep the last good state."""
        bad = (~torch.isfinite(loss.detach())).float()
        if self.acc.num_processes > 1:
            bad = self.acc.reduce(bad, reduction="sum")  # every process must stop together
        if not bad.item():
            return
        where = "the starting model is unchanged"
        if step > 0:
            path = self.tdir.state_dir(step)
            if self.last_saved != step or not path.exists():
                path = save_state(self.acc, self.tdir, step)
            where = f"the last good state (step {step}) is kept in {path}"
        raise IrpoError(
            f"training step {step + 1}: the loss is {loss.item()} (not finite); stopped before "
            f"the optimizer step, {where}. Lower train.learning_rate, or check the pairs' "
            "reference log-probs"
        )

    def _log_window(self, step: int, log_fn: LogFn | None) -> dict[str, float]:
        """Average the metrics since the last log over steps and processes; write one row."""
        keys = sorted(self.window)
        vec = torch.stack(
            [self.window[k] for k in keys]
            + [torch.tensor(float(self.window_tokens), dtype=torch.float64, device=self.acc.device)]
        )
        if self.acc.num_processes > 1:
            vec = self.acc.reduce(vec, reduction="sum")
        values = vec.tolist()
        # Every process ran the same steps: metrics are means of per-process means; `lr` and
        # `grad_norm` are identical on every process.
        row: dict[str, Any] = {"step": step, "epoch": round(self.plan.epoch_at(step), 6)}
        for k, v in zip(keys, values[:-1], strict=True):
            row[k] = v / (self.window_steps * self.acc.num_processes)
        row["tokens_per_s"] = values[-1] / max(self.window_seconds, 1e-9)
        self.window, self.window_steps, self.window_tokens, self.window_seconds = {}, 0, 0, 0.0
        if self.acc.is_main_process:
            assert self.log_file is not None
            self.log_file.write(json.dumps(row) + "\n")
            self.log_file.flush()
            log.info(
                "step %d/%d loss %.4f lr %.3g",
                step,
                self.plan.total_steps,
                row.get("loss", float("nan")),
                row.get("lr", 0.0),
            )
            if log_fn is not None:
                log_fn(row)
        return row


# --------------------------------------------------------------------------- resume and save


def _mean_length(job: Job) -> int:
    """Mean tokens per sequence of the job's examples (prompt and response): the step shape the
    precision probe times."""
    lengths = [job.length_of(e) for e in job.examples]
    return max(1, round(sum(lengths) / len(lengths))) if lengths else 1


def _settings(
    job: Job, model_path: str, cfg: TrainConfig, seed: int, model_cfg: ModelConfig | None
) -> dict[str, Any]:
    train = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _RESUMABLE_CHANGES}
    return {
        "kind": job.kind,
        "model": model_path,
        "model_dtype": model_cfg.dtype if model_cfg else "auto",
        "seed": seed,
        "train": train,
        "num_examples": len(job.examples),
        "data_sha256": job.fingerprint,
    }


def _check_settings(tdir: TrainDir, settings: dict[str, Any], is_main: bool) -> None:
    saved = read_settings(tdir)
    if saved is not None and saved != settings:
        changed = sorted(k for k in settings if saved.get(k) != settings[k])
        if "train" in changed:
            changed.remove("train")
            changed += [
                f"train.{k}"
                for k in settings["train"]
                if saved["train"].get(k) != settings["train"][k]
            ]
        raise IrpoError(
            f"{tdir.root} holds a training with other settings (changed: {', '.join(changed)}); "
            "use another output folder, or start over (resume=False / --no-resume)"
        )
    if saved is None and is_main:
        tdir.root.mkdir(parents=True, exist_ok=True)
        write_json(tdir.settings, settings)


def _resume_state(accelerator: Any, tdir: TrainDir) -> int:
    latest = tdir.latest_state()
    if latest is None:
        if accelerator.is_main_process:
            tdir.log.unlink(missing_ok=True)  # rows of a run that saved no state are redone
        accelerator.wait_for_everyone()
        return 0
    step, path = latest
    accelerator.load_state(str(path))
    if accelerator.is_main_process:
        truncate_log(tdir.log, step)
    accelerator.wait_for_everyone()
    log.info("resumed the training at step %d from %s", step, path)
    return step


def _save_final(
    accelerator: Any, scorer: Any, model_path: str, cfg: TrainConfig, tdir: TrainDir
) -> None:
    """The final model as a plain `from_pretrained` checkpoint (LoRA merged), atomically."""
    from irpo.models import load_tokenizer

    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(scorer)  # gathered by every process (FSDP, ZeRO-3)
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(scorer).model
        if cfg.lora is not None:
            model, state_dict = model.merge_and_unload(), None
        else:
            state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()}
        save_model_atomic(model, load_tokenizer(model_path), state_dict, tdir.model)
    accelerator.wait_for_everyone()


def _remove_states(tdir: TrainDir) -> None:
    """A finished training needs no resumable state (it holds optimizer moments: 3x the model)."""
    import shutil

    shutil.rmtree(tdir.checkpoints, ignore_errors=True)


def read_json_dict(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise IrpoError(f"{path}: expected a JSON object")
    return data


def fingerprint(rows: Sequence[Sequence[Sequence[int]]], extra: Sequence[Any] = ()) -> str:
    """sha256 of the token ids of every example (and optional extra values, e.g. references)."""
    h = hashlib.sha256()
    for parts in rows:
        for ids in parts:
            h.update(array("q", ids).tobytes())
            h.update(b"|")
        h.update(b"\n")
    h.update(repr(list(extra)).encode())
    return h.hexdigest()
