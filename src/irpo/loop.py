"""Iterations: sample -> verify -> pair -> reference log-probs -> train -> evaluate, resumable.

`run(config, run_dir)` is `irpo run`. Each stage is recorded in the run manifest when its outputs
are complete and checked; running the same command again skips finished stages (whose files
still match what they wrote) and resumes unfinished ones from their partial outputs, so a killed
run ends with the same results as an uninterrupted one. One process writes a run at a time (the
run's lock); SIGTERM and SIGINT stop it at the next safe point (`irpo.preemption`); a full disk
or a read-only run directory stops it with the path and the stage, keeping what was finished.

Which stages an iteration runs comes from its method (`loop.method`, `irpo.methods`): methods
that train on samples sample first; methods that train on pairs pair them and score their
references under M_t first. All methods share the same logs and report.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irpo import preemption
from irpo.config import SCRATCH, RunConfig
from irpo.errors import IrpoError
from irpo.launch import LaunchPlan, StageLauncher, Step, write_run_token
from irpo.methods import Method, get_method
from irpo.pair_stage import gold_tokens, pair_samples, prompt_tokens, write_pairs
from irpo.records import (
    Problem,
    read_json,
    read_jsonl,
    read_pairs,
    read_samples,
    write_json,
    write_jsonl,
)
from irpo.rundir import RunDir
from irpo.tasks import get_task
from irpo.tasks.base import Task
from irpo.tracking import ProgressFactory, Trackers

log = logging.getLogger(__name__)

# Write errors a rerun can get past once the user has made room or fixed the permissions.
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass
class RunSummary:
    run_dir: Path
    evals: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


class Pipeline:
    """One run: the stages of every iteration, each skipped when the manifest says it is done."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        *,
        allow_config_change: bool = False,
        progress: ProgressFactory | None = None,
    ) -> None:
        self.config = config
        self.run = RunDir(run_dir)
        self.allow_config_change = allow_config_change
        self.progress = progress
        self.trackers = Trackers(config.trackers, self.run.root, config.model_dump(mode="json"))
        self.task: Task = get_task(config.task.name, **config.task.options)
        self.method: Method = get_method(config.loop.method)
        self.launcher: StageLauncher | None = None
        """Set when stages run in processes of their own (`launch.mode: processes` or `ray`)."""
        self.run_token: str | None = None
        """What the driver wrote in RUN/run.token, which every worker reads back."""
        self.on_ray = config.launch.mode == "ray"
        """Sampling and evaluation on a Ray cluster (`irpo.sampling.ray_data`)."""
        self._stage_name = "start"
        """The stage running now (named by write errors)."""
        self._launched: set[str] = set()
        """Stages whose processes have run (in a launch with an earlier stage) but that are not
        recorded yet: their stage method only merges and records."""
        self._train_problems: list[Problem] | None = None
        self._eval_problems: list[Problem] | None = None
        self._tokenizer: Any = None

    # ------------------------------------------------------------------ inputs (lazy)
    @property
    def train_problems(self) -> list[Problem]:
        if self._train_problems is None:
            t = self.config.task
            self._train_problems = self.task.load(
                t.train_source, t.train_split, limit=t.train_limit, skip_bad_rows=t.skip_bad_rows
            )
            if not self._train_problems:
                raise IrpoError(f"task {t.name}: no training problems in {t.train_source}")
        return self._train_problems

    @property
    def eval_problems(self) -> list[Problem]:
        if self._eval_problems is None:
            t = self.config.task
            source = t.eval_source if t.eval_source is not None else t.train_source
            self._eval_problems = self.task.load(
                source, t.eval_split, limit=t.eval_limit, skip_bad_rows=t.skip_bad_rows
            )
        return self._eval_problems

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from irpo.models import load_tokenizer

            self._tokenizer = load_tokenizer(
                self.model_path(0), self.config.model.trust_remote_code
            )
        return self._tokenizer

    def model_path(self, t: int) -> str:
        return model_path(self.run, self.config, t)

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunSummary:
        """Run every stage not yet done, holding the run's lock (a second writer stops at once)."""
        with preemption.graceful_stop(), self.run.writer_lock():
            try:
                self.run.init(self.config, allow_config_change=self.allow_config_change)
                if self.config.launch.mode != "inline":
                    self._start_launcher()
                return self._execute()
            except OSError as e:
                if e.errno not in _WRITE_ERRORS:
                    raise
                raise IrpoError(
                    f"stage {self._stage_name}: cannot write {e.filename or self.run.root}: "
                    f"{e.strerror}. Finished stages are kept; make room (or make the run "
                    "directory writable) and run the same command again to continue"
                ) from e
            finally:
                self.trackers.finish()

    def _start_launcher(self) -> None:
        """The launch plan (refused here, before anything runs), the run's token, and on Ray
        every node's check that it sees the run directory."""
        plan = LaunchPlan.of(self.config)
        log.info("launching stages in processes: %s", plan)
        self.run_token = write_run_token(self.run.root)
        if self.on_ray:
            from irpo.sampling.ray_data import check_nodes, connect

            connect(self.config)
            hosts = check_nodes(self.run.root, self.run_token)
            log.info("Ray cluster: %d nodes see %s (%s)", len(hosts), self.run.root, hosts)
        self.launcher = StageLauncher(
            plan,
            self.run.root,
            self.run.lock_fd,
            token=self.run_token,
            sampling_elsewhere=self.on_ray,
        )

    def _ray_engine(self, t: int) -> Any:
        from irpo.sampling.ray_data import RayEngine

        assert self.run_token is not None
        return RayEngine(self.config, self.model_path(t), self.run.root, self.run_token)

    def _begin(self, stage: str) -> bool:
        """False when `stage` is done (its outputs checked); else True, once no stop is asked."""
        if self.run.is_done(stage):
            return False
        preemption.check(f"before stage {stage}")
        self._stage_name = stage
        return True

    def _execute(self) -> RunSummary:
        cfg = self.config
        summary = RunSummary(self.run.root)
        if cfg.model.name_or_path == SCRATCH:
            self.stage_seed()
        summary.evals.append(self.stage_eval(0))
        for t in range(cfg.loop.iterations):
            if self.run.manifest().get("stopped_after") is not None:
                summary.stopped_early = True
                break
            if self.method.samples:
                self.stage_sample(t)
            if self.method.preference:
                self.stage_pairs(t)
                self.stage_reference(t)
                self.stage_train_preference(t)
            else:
                self.stage_train_sft(t)
            if cfg.eval.on_train_iterations or t + 1 == cfg.loop.iterations:
                summary.evals.append(self.stage_eval(t + 1))
            if self._saturated(summary.evals):
                self.run.set_value("stopped_after", t)
                log.info("stopping: greedy accuracy gain below loop.min_gain after iteration %d", t)
                summary.stopped_early = t + 1 < cfg.loop.iterations
                break
        return summary

    def _saturated(self, evals: list[dict[str, Any]]) -> bool:
        gain_min = self.config.loop.min_gain
        if gain_min is None or len(evals) < 2:
            return False
        gain = 100.0 * (evals[-1]["greedy_accuracy"] - evals[-2]["greedy_accuracy"])
        return gain < gain_min

    def _sampling_progress(self, desc: str, total: int) -> Callable[[Any], None] | None:
        """Adapt the engines' running totals to a progress bar from the CLI's factory."""
        if self.progress is None:
            return None
        update = self.progress(desc, total)
        shown = 0
        offset = 0  # evaluation runs greedy then sampled passes: their counts restart

        def callback(p: Any) -> None:
            nonlocal shown, offset
            done = offset + p.questions_done
            if done < shown:
                offset, done = shown, shown + p.questions_done
            if done > shown:
                update(done - shown, tok_s=f"{p.tokens_per_s:.0f}")
                shown = done
            if p.questions_done == p.questions_total:
                offset = shown

        return callback

    def _log(self, stage: str, t: int, values: dict[str, Any]) -> None:
        row = {"stage": stage, "iteration": t, **values}
        self.run.log_metrics(row)
        self.trackers.log(row)

    # ------------------------------------------------------------------ stages
    def stage_seed(self) -> None:
        """Build M_0 from scratch (the demo): reuse the cached seed model when it exists."""
        if not self._begin("seed"):
            return
        from irpo.seed_model import build_seed_model

        assert self.config.seed_model is not None
        cached = build_seed_model(self.config, self.task, progress=self.progress)
        if self.run.seed_dir.exists():
            shutil.rmtree(self.run.seed_dir)
        shutil.copytree(cached, self.run.seed_dir)
        self.run.mark_done("seed", [self.run.seed_dir], cache=str(cached))

    def _engine(self, t: int) -> Any:
        from irpo.sampling import make_engine

        # A fresh engine per model: the hand-off between training and generation is the saved
        # checkpoint, never in-process weight syncing.
        return make_engine(self.config.model, self.config.sampling, model_path=self.model_path(t))

    def stage_eval(self, t: int) -> dict[str, Any]:
        path = self.run.eval_path(t)
        if not self._begin(f"eval_{t}"):
            result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return result
        res = self._evaluate(t, path)
        out = res.to_dict()
        _expect(
            len(out["per_question"]) == len(self.eval_problems),
            f"{path}: {len(out['per_question'])} questions, {len(self.eval_problems)} asked for",
        )
        summary = {k: v for k, v in out.items() if k != "per_question"}
        self._log("eval", t, summary)
        log.info("M_%d: %s", t, summary)
        from irpo.evaluate import eval_sample_paths

        written = [p for p in eval_sample_paths(path).values() if p.exists()]
        self.run.mark_done(f"eval_{t}", [path, *written])
        return out

    def _evaluate(self, t: int, path: Path) -> Any:
        from irpo.evaluate import (
            eval_sample_paths,
            eval_settings,
            evaluate_files,
            evaluate_model,
            sample_for_eval,
        )

        cfg = self.config
        passes = int(cfg.eval.greedy) + int(cfg.eval.maj_k > 0)
        if self.launcher is None:
            return evaluate_model(
                self._engine(t),
                self.task,
                self.eval_problems,
                cfg.eval,
                seed=cfg.seed,
                max_new_tokens=cfg.eval_max_new_tokens,
                stop_at_final_answer=cfg.sampling.stop_at_final_answer,
                out_path=path,
                progress=self._sampling_progress(f"eval M_{t}", passes * len(self.eval_problems)),
            )
        from irpo.sampling.shards import Shard, merge_into

        if self.on_ray:  # the driver draws through the cluster into one shard file
            workers = 1
            sample_for_eval(
                self._ray_engine(t),
                self.task,
                self.eval_problems,
                cfg.eval,
                path,
                seed=cfg.seed,
                max_new_tokens=cfg.eval_max_new_tokens,
                stop_at_final_answer=cfg.sampling.stop_at_final_answer,
                shard=Shard(0, 1),
                progress=self._sampling_progress(f"eval M_{t}", passes * len(self.eval_problems)),
            )
        else:
            self._launch("eval", t)
            workers = self.launcher.plan.sampling_shards
        paths = eval_sample_paths(path)
        for name, wanted in (("greedy", cfg.eval.greedy), ("sampled", cfg.eval.maj_k > 0)):
            if wanted:
                merge_into(paths[name], workers, self.eval_problems)
        settings = eval_settings(
            cfg.eval,
            engine=cfg.sampling.engine,
            seed=cfg.seed,
            max_new_tokens=cfg.eval_max_new_tokens,
            stop_at_final_answer=cfg.sampling.stop_at_final_answer,
        )
        return evaluate_files(self.task, self.eval_problems, cfg.eval, path, settings)

    def stage_sample(self, t: int) -> None:
        stage = f"iter_{t}/sample"
        if not self._begin(stage):
            return
        from irpo.sampling import SampleStats, check_samples, sample_problems
        from irpo.sampling.shards import Shard, merge_into, shard_path

        it = self.run.iteration(t)
        params = self.config.sampling.params_for(t, seed=self.config.seed)
        progress = self._sampling_progress(f"iter {t} sample", len(self.train_problems))
        if self.on_ray:  # the driver draws through the cluster into one shard file
            one = Shard(0, 1)
            stats = sample_problems(
                self._ray_engine(t),
                self.task,
                self.train_problems,
                params,
                shard_path(it.samples, one),
                shard=one,
                stats_path=it.sample_stats,
                progress=progress,
            )
            merge_into(it.samples, 1, self.train_problems)
        elif self.launcher is not None:
            self._launch("sample", t)
            workers = self.launcher.plan.sampling_shards
            merged = merge_into(it.samples, workers, self.train_problems)
            stats = SampleStats.of_samples(merged, params.num_samples)
            write_json(it.sample_stats, stats.to_dict())
        else:
            stats = sample_problems(
                self._engine(t),
                self.task,
                self.train_problems,
                params,
                it.samples,
                stats_path=it.sample_stats,
                progress=progress,
            )
        check_samples(it.samples, self.train_problems, params.num_samples)
        self._log("sample", t, {"temperature": params.temperature, **stats.summary()})
        self.run.mark_done(stage, [it.samples], derived=[it.sample_stats])

    def _prompts(self, problems: list[Problem]) -> dict[str, tuple[str, list[int]]]:
        return prompt_tokens(self.task, problems, self.tokenizer(), self.config.model.chat_template)

    def _gold(self, problems: list[Problem]) -> dict[str, tuple[str, list[int]]]:
        return gold_tokens(self.task, problems, self.tokenizer())

    def stage_pairs(self, t: int) -> None:
        stage = f"iter_{t}/pairs"
        if not self._begin(stage):
            return
        it = self.run.iteration(t)
        pairs, stats = pair_samples(
            self.task,
            self.train_problems,
            read_samples(it.samples),
            self.tokenizer(),
            self.config,
            seed=self.config.iteration_seed(t),
        )
        write_pairs(pairs, stats, it.root)
        self._log("pairs", t, stats.to_dict())
        log.info("iteration %d pairs: %s", t, stats.to_dict())
        if not pairs:
            raise IrpoError(
                f"iteration {t}: no preference pairs (every question was all-correct or all-wrong: "
                f"see {it.pair_stats}); raise sampling.temperature or sampling.num_samples"
            )
        keys = {(p.problem_id, p.chosen_index, p.rejected_index) for p in pairs}
        _expect(len(keys) == len(pairs), f"{it.pairs}: {len(pairs) - len(keys)} repeated pairs")
        self.run.mark_done(stage, [it.pairs, it.preference, it.pair_stats], pairs=len(pairs))

    def stage_reference(self, t: int) -> None:
        """Reference log-probs under M_t (or M_0), once, before training: one no-grad pass,
        so training holds one model, not a policy and a frozen reference."""
        stage = f"iter_{t}/reference"
        if not self._begin(stage):
            return
        it = self.run.iteration(t)
        ref_index = t if self.config.loop.reference == "current" else 0
        if self.launcher is not None:
            self._launch("reference", t)
        else:
            from irpo.train.reference import reference_file

            reference_file(
                self.model_path(ref_index),
                it.pairs,
                it.reference,
                batch_size=self.config.train.ref_batch_size,
                model_cfg=self.config.model,
            )
        self.run.mark_done(stage, [it.reference], reference=f"M_{ref_index}")

    def _log_step(self, t: int) -> Callable[[dict[str, Any]], None]:
        def log_fn(row: dict[str, Any]) -> None:
            self._log("train_step", t, row)

        return log_fn

    def stage_train_preference(self, t: int) -> None:
        stage = f"iter_{t}/train"
        if not self._begin(stage):
            return
        from irpo.train import train_preference
        from irpo.train.reference import with_reference

        it = self.run.iteration(t)
        if self.launcher is not None:  # the training processes read the pairs themselves
            self._launch("train", t)
            result = self._launched_result(t)
        else:
            pairs = with_reference(read_pairs(it.pairs), it.reference)
            result = train_preference(self.model_path(t), pairs, **self._training(t))
        self._finish_training(t, result)

    def _launched_result(self, t: int) -> Any:
        """The result of a training run in its own processes; its steps go to the run's log."""
        from irpo.train import TrainResult

        tdir = self.run.iteration(t).train
        for row in read_jsonl(tdir / "train_log.jsonl"):
            self._log("train_step", t, row)
        return TrainResult.from_dict(read_json(tdir / "result.json"))

    def _training(self, t: int) -> dict[str, Any]:
        """What both kinds of training job of iteration t take besides the model and data."""
        return {
            "cfg": self.config.train,
            "output_dir": self.run.iteration(t).train,
            "method": self.method,
            "seed": self.config.iteration_seed(t),
            "model_cfg": self.config.model,
            "log_fn": self._log_step(t),
            "progress": self.progress,
        }

    def _finish_training(self, t: int, result: Any) -> None:
        it = self.run.iteration(t)
        if Path(result.model_dir).resolve() != it.model.resolve():
            raise IrpoError(f"the trainer saved {result.model_dir}, expected {it.model}")
        _expect((it.model / "config.json").exists(), f"{it.model}: no config.json was saved")
        self.run.mark_done(
            f"iter_{t}/train",
            [it.model],
            derived=[it.train],  # its logs, settings and result (with timings) go with a redo
            examples=result.num_examples,
            steps=result.steps,
        )

    def stage_train_sft(self, t: int) -> None:
        stage = f"iter_{t}/train"
        if not self._begin(stage):
            return
        from irpo.train import SftExample, train_sft

        it = self.run.iteration(t)
        problems = self.train_problems
        prompts = self._prompts(problems)
        examples: list[SftExample] = []
        source = self.method.trains_on
        if source == "gold":
            for pid, (_, ids) in self._gold(problems).items():
                examples.append(SftExample(prompt_ids=prompts[pid][1], response_ids=ids))
        else:
            for s in read_samples(it.samples):
                if s.correct:
                    examples.append(
                        SftExample(prompt_ids=prompts[s.problem_id][1], response_ids=s.token_ids)
                    )
        if not examples:
            raise IrpoError(f"iteration {t}: no SFT examples ({source}); nothing to train on")
        if self.launcher is not None:
            rows = ({"prompt_ids": e.prompt_ids, "response_ids": e.response_ids} for e in examples)
            write_jsonl(it.sft_examples, rows)
            self._launch("train", t)
            result = self._launched_result(t)
        else:
            result = train_sft(self.model_path(t), examples, **self._training(t))
        self._finish_training(t, result)

    # ------------------------------------------------------------------ launching
    def _launch(self, kind: str, t: int) -> None:
        """Run stage `kind` of iteration t in its processes, with the stages after it that are
        due and can share them (`StageLauncher.joins`); nothing when an earlier launch ran it."""
        first = self._step(kind, t)
        if first.stage in self._launched:
            self._launched.discard(first.stage)
            return
        assert self.launcher is not None
        steps = [first]
        for nxt_kind, u in self._stages_after(kind, t):
            step = self._step(nxt_kind, u)
            if not self.launcher.joins(steps[-1], step) or self.run.is_done(step.stage):
                break
            steps.append(step)
        self.launcher.launch(steps)
        self._launched.update(s.stage for s in steps[1:])

    def _stages_after(self, kind: str, t: int) -> list[tuple[str, int]]:
        """The stages that follow (kind, t) in this run, up to the next one the driver does
        itself (pairs) or that waits on a decision (the early stop after an eval)."""
        cfg, m = self.config, self.method
        if kind == "eval" and t > 0 and cfg.loop.min_gain is not None:
            return []  # whether sampling follows depends on this eval's result
        order: list[tuple[str, int]] = [("eval", 0)]
        for u in range(cfg.loop.iterations):
            order += [("sample", u)] if m.samples else []
            order += [("pairs", u), ("reference", u)] if m.preference else []
            order.append(("train", u))
            if cfg.eval.on_train_iterations or u + 1 == cfg.loop.iterations:
                order.append(("eval", u + 1))
        after: list[tuple[str, int]] = []
        for nxt in order[order.index((kind, t)) + 1 :]:
            if nxt[0] == "pairs":
                break
            after.append(nxt)
            if nxt[0] == "eval" and nxt[1] > 0 and cfg.loop.min_gain is not None:
                break
        return after

    def _step(self, kind: str, t: int) -> Step:
        assert self.launcher is not None
        launcher, it = self.launcher, self.run.iteration(t)
        if kind == "eval":
            return launcher.eval_step(f"eval_{t}", self.model_path(t), self.run.eval_path(t))
        if kind == "sample":
            return launcher.sample_step(f"iter_{t}/sample", t, self.model_path(t), it.root)
        if kind == "reference":
            ref_index = t if self.config.loop.reference == "current" else 0
            model = self.model_path(ref_index)
            return launcher.reference_step(f"iter_{t}/reference", model, it.pairs, it.reference)
        if self.method.preference:
            return launcher.train_step(
                f"iter_{t}/train", t, self.model_path(t), it.pairs, it.train, it.reference
            )
        return launcher.train_step(
            f"iter_{t}/train",
            t,
            self.model_path(t),
            it.sft_examples,
            it.train,
            None,
            after_driver=True,  # the driver writes the examples from the samples first
        )


def run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    allow_config_change: bool = False,
    progress: ProgressFactory | None = None,
) -> RunSummary:
    """Run (or resume) every iteration of `config` in `run_dir`."""
    return Pipeline(
        config, run_dir, allow_config_change=allow_config_change, progress=progress
    ).execute()


def _expect(condition: bool, problem: str) -> None:
    """A stage's check of its own outputs before it is recorded as done."""
    if not condition:
        raise IrpoError(f"{problem}; the stage is not recorded as done")


# --------------------------------------------------------------------------- models of a run


def model_path(run: RunDir, config: RunConfig, t: int) -> str:
    """M_t of a run: M_0 is the seed model; M_{t+1} is iteration t's checkpoint."""
    if t > 0:
        return str(run.iteration(t - 1).model)
    if config.model.name_or_path == SCRATCH:
        return str(run.seed_dir)
    from irpo.models import resolve_model_path

    return resolve_model_path(config.model.name_or_path)
