"""Sampling and evaluation on a Ray cluster through Ray Data (`launch.mode: ray`, the `ray`
extra: `pip install 'irpo[ray]'`).

`RayEngine` is an `Engine` like the local ones: the sampling stage (`sample_problems`, and
`sample_for_eval` for evaluations) runs unchanged in the driver, encodes the prompts, names
every sample's seed, verifies each question's completions and appends them to the same shard
file the local engines write; only the generation happens on the cluster. So the records, the
resume of an interrupted file (question by question), the merge and the pairing are the local
ones, and a rerun after a lost machine draws only the questions missing from the file.

- sampling.engine `transformers`: `Dataset.map_batches` with a callable class holding irpo's
  `TransformersEngine`, in an actor pool of `launch.ray_replicas` replicas (1 CPU or 1 GPU
  each). A batch is `launch.ray_batch_questions` questions with all their samples; a replica
  that dies is restarted and its batch redone (`launch.ray_max_restarts` times, then the stage
  fails with the replica's error).
- sampling.engine `vllm`: Ray Data LLM (`ray.data.llm.vLLMEngineProcessorConfig` +
  `build_processor`), `launch.ray_replicas` vLLM engines of `launch.ray_tensor_parallel_size`
  GPUs each. Every sample is its own row with its own sampling parameters (n=1 and its
  sequence seed, as `irpo.sampling.vllm` sends them), already tokenized; Ray Data LLM's chat
  template, tokenizer and detokenizer stages are off (irpo encodes and decodes).

The driver checks that every node of the cluster sees the run directory (`irpo.launch
.check_run_dir`, a task pinned to each node) before the first stage and before each vLLM pass;
every transformers replica checks it too before it loads the model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from irpo.config import RunConfig
from irpo.errors import IrpoError
from irpo.sampling.engine import (
    Completion,
    DecodeParams,
    Progress,
    ProgressCallback,
    PromptRequest,
    TokenizerSide,
)

log = logging.getLogger(__name__)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise IrpoError(
            "launch.mode: ray needs Ray: pip install 'irpo[ray]' (on every machine of the cluster)"
        ) from None
    return ray


def connect(config: RunConfig) -> Any:
    """Join the Ray cluster of `launch.ray_address` (or the one this process already joined)."""
    ray = import_ray()
    if not ray.is_initialized():
        address = config.launch.ray_address
        log.info("joining the Ray cluster %s", address or "(RAY_ADDRESS, or a local one)")
        ray.init(address=address, log_to_driver=True)
    return ray


def check_nodes(run_root: str | Path, token: str) -> list[str]:
    """Every alive node of the cluster reads the run's token (a task pinned to each node); an
    error naming each host that does not see the run directory. Returns the nodes' hosts."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check = ray.remote(num_cpus=0, max_retries=0)(_node_check)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        check.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(str(run_root), token)
        for n in nodes
    ]
    answers = ray.get(refs)
    errors = [error for _, error in answers if error is not None]
    if errors:
        raise IrpoError("\n".join(errors))
    return [host for host, _ in answers]


def _node_check(run_root: str, token: str) -> tuple[str, str | None]:
    """On one node: (its host name, the error when it does not see the run directory)."""
    import socket

    from irpo.launch import check_run_dir

    try:
        check_run_dir(run_root, token)
    except IrpoError as e:
        return socket.gethostname(), str(e)
    return socket.gethostname(), None


class RayEngine(TokenizerSide):
    """The cluster's replicas of one model, as an `Engine` of the driver (module docstring)."""

    def __init__(self, config: RunConfig, model_path: str, run_root: Path, token: str) -> None:
        from irpo.models import eos_token_ids, load_generation_config, load_tokenizer

        self.ray = connect(config)
        self.config = config
        self.name = config.sampling.engine
        self.model_path = model_path
        self.run_root = str(run_root)
        self.token = token
        self.tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
        self.chat_template = config.model.chat_template
        self.eos_ids = eos_token_ids(self.tokenizer, load_generation_config(model_path))
        launch = config.launch
        self.tp = launch.ray_tensor_parallel_size or int(
            config.sampling.vllm.get("tensor_parallel_size", 1)
        )
        gpus = int(self.ray.cluster_resources().get("GPU", 0))
        self.gpus_per_replica = 0 if gpus == 0 or config.model.device == "cpu" else 1
        if self.name == "vllm":
            self.gpus_per_replica = self.tp
        self.replicas = launch.ray_replicas or max(1, gpus // max(1, self.gpus_per_replica))

    def generate(
        self,
        requests: Sequence[PromptRequest],
        params: DecodeParams,
        progress: Progress | None = None,
        on_step: ProgressCallback | None = None,
    ) -> Iterator[tuple[PromptRequest, list[Completion]]]:
        if not requests:
            return
        progress = progress or Progress(questions_total=len(requests))
        by_key = {r.key: r for r in requests}
        results = (
            self._vllm(requests, params)
            if self.name == "vllm"
            else self._replicas(requests, params)
        )
        try:
            for key, completions in results:
                progress.tokens += sum(len(c.token_ids) for c in completions)
                progress.sequences_done += len(completions)
                progress.questions_done += 1
                yield by_key[key], completions
                if on_step is not None:
                    on_step(progress)
        except self.ray.exceptions.RayError as e:
            raise IrpoError(
                f"sampling on the Ray cluster failed: {worker_error(e)}. The questions "
                "already written are kept: run the same command again to draw the rest"
            ) from None

    # ------------------------------------------------------------------ transformers replicas
    def _replicas(
        self, requests: Sequence[PromptRequest], params: DecodeParams
    ) -> Iterator[tuple[str, list[Completion]]]:
        launch = self.config.launch
        rows = [
            {"request": json.dumps([r.key, list(r.prompt_ids), list(r.sample_seeds)])}
            for r in requests
        ]
        batch = launch.ray_batch_questions
        batches = math.ceil(len(rows) / batch)
        ds = self.ray.data.from_items(rows, override_num_blocks=batches)
        with warnings.catch_warnings():  # max_restarts has no named parameter (Ray 2.60)
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
            ds = ds.map_batches(
                TransformersReplica,
                fn_constructor_kwargs={
                    "config": self.config.model_dump(mode="json"),
                    "model_path": self.model_path,
                    "params": asdict(params),
                    "run_root": self.run_root,
                    "token": self.token,
                    "threads": max(1, int(launch.ray_cpus_per_replica)),
                },
                batch_size=batch,
                batch_format="numpy",
                compute=self.ray.data.ActorPoolStrategy(size=min(self.replicas, batches)),
                num_cpus=launch.ray_cpus_per_replica,
                num_gpus=self.gpus_per_replica,
                max_restarts=launch.ray_max_restarts,
                max_task_retries=launch.ray_max_restarts,
            )
        for row in ds.iter_rows():
            key, completions = json.loads(row["result"])
            yield key, [Completion(i, ids, text, reason) for i, ids, text, reason in completions]

    # ------------------------------------------------------------------ Ray Data LLM (vLLM)
    def _vllm(
        self, requests: Sequence[PromptRequest], params: DecodeParams
    ) -> Iterator[tuple[str, list[Completion]]]:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        from irpo.sampling.vllm import to_completion

        ray = self.ray
        cfg = self.config
        sampling: dict[str, Any] = {
            "n": 1,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "min_tokens": params.min_new_tokens,
            "stop_token_ids": sorted(self.eos_ids),
            "detokenize": False,
        }
        rows = []
        for r in requests:
            for j, seed in enumerate(r.sample_seeds):
                row_params = {**sampling, "seed": seed} if params.temperature > 0 else sampling
                rows.append(
                    {
                        "key": r.key,
                        "index": j,
                        "prompt_ids": list(r.prompt_ids),
                        "sampling_params": row_params,
                    }
                )
        engine_kwargs = {
            **cfg.sampling.vllm,
            "tensor_parallel_size": self.tp,
            "dtype": cfg.model.dtype,
            "trust_remote_code": cfg.model.trust_remote_code,
        }
        per_question = max(1, len(rows) // len(requests))
        on_cpus: dict[str, Any] = {}  # Ray Data LLM reserves a GPU per engine worker otherwise
        if not self.ray.cluster_resources().get("GPU", 0):  # (vLLM's CPU build)
            cpus = cfg.launch.ray_cpus_per_replica
            on_cpus = {"placement_group_config": {"bundle_per_worker": {"CPU": cpus}}}
        processor = build_processor(
            vLLMEngineProcessorConfig(
                model_source=self.model_path,
                engine_kwargs=engine_kwargs,
                concurrency=self.replicas,
                batch_size=cfg.launch.ray_batch_questions * per_question,
                chat_template_stage=False,
                tokenize_stage=False,
                detokenize_stage=False,
                **on_cpus,
            ),
            preprocess=_vllm_request,
            postprocess=_vllm_result,
        )
        check_nodes(self.run_root, self.token)  # the nodes of now (an autoscaled cluster grows)
        ds = ray.data.from_items(rows)
        pending: dict[str, dict[int, Completion]] = {}
        wanted = {r.key: r.num_samples for r in requests}
        for row in processor(ds).iter_rows():
            key, index = str(row["key"]), int(row["index"])
            ids = [int(t) for t in row["token_ids"]]
            reason = "stop" if ids and ids[-1] in self.eos_ids else "length"
            done = pending.setdefault(key, {})
            done[index] = to_completion(
                index, ids, reason, None, params, eos_ids=self.eos_ids,
                newline_ids=self.newline_ids, decode=self.decode,
            )  # fmt: skip
            if len(done) == wanted[key]:
                del pending[key]
                yield key, [done[j] for j in range(wanted[key])]


def worker_error(error: BaseException) -> str:
    """The message of the error a Ray worker raised (an IrpoError's own line when there is
    one), not the wrapping exceptions' tracebacks."""
    seen: BaseException | None = error
    innermost = error
    while seen is not None:
        if isinstance(seen, IrpoError):
            return str(seen)
        for line in str(seen).splitlines():  # a worker's traceback, as text (actor creation)
            if line.startswith(_IRPO_ERROR):
                return line[len(_IRPO_ERROR) :]
        if str(seen).strip():
            innermost = seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    if innermost is not error:  # the exception raised in the worker
        return f"{type(innermost).__name__}: {str(innermost).strip().splitlines()[0]}"
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    where = [ln for ln in lines if ln.startswith(("pid:", "ip:"))]  # an ActorDiedError's
    return lines[0] + (f" ({', '.join(where)})" if where else "")


_IRPO_ERROR = f"{IrpoError.__module__}.{IrpoError.__name__}: "


def _vllm_request(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "index": row["index"],
        "tokenized_prompt": list(row["prompt_ids"]),
        "sampling_params": row["sampling_params"],
    }


def _vllm_result(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": row["key"], "index": row["index"], "token_ids": list(row["generated_tokens"])}


class TransformersReplica:
    """One replica of irpo's transformers engine in a Ray worker (Ray Data's actor pool)."""

    def __init__(
        self,
        config: dict[str, Any],
        model_path: str,
        params: dict[str, Any],
        run_root: str,
        token: str,
        threads: int,
    ) -> None:
        import torch

        from irpo.launch import check_run_dir
        from irpo.sampling import make_engine

        check_run_dir(run_root, token)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        cfg = RunConfig.model_validate(config)
        self.engine = make_engine(cfg.model, cfg.sampling, model_path=model_path)
        self.params = DecodeParams(**params)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        requests = []
        for text in batch["request"]:
            key, prompt_ids, seeds = json.loads(str(text))
            requests.append(PromptRequest(key, tuple(prompt_ids), tuple(seeds)))
        results = []
        for req, completions in self.engine.generate(requests, self.params):
            done = [[c.index, c.token_ids, c.text, c.finish_reason] for c in completions]
            results.append(json.dumps([req.key, done]))
        return {"result": np.array(results, dtype=object)}
