"""Sampling: engines that generate completions, and the stage that verifies and stores them.

    engine = make_engine(config.model, config.sampling, model_path)
    stats = sample_problems(engine, task, problems, SamplingParams(...), "samples.jsonl")

`irpo.sampling.engine` is the interface, `irpo.sampling.transformers_engine` the transformers
engine (CPU and GPU), `irpo.sampling.vllm` the vLLM one (GPU, optional), `irpo.sampling.stage` the
stage, `irpo.sampling.ray_data` an engine whose replicas run on a Ray cluster (optional).
Importing this package does not import torch, transformers, vLLM or Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from irpo.sampling.engine import (
    Completion,
    DecodeParams,
    Engine,
    Progress,
    ProgressCallback,
    PromptRequest,
    SamplingParams,
)
from irpo.sampling.shards import Shard, merge_shards, select_shard
from irpo.sampling.stage import QuestionStats, SampleStats, check_samples, sample_problems

if TYPE_CHECKING:
    from irpo.config import ModelConfig, SamplingConfig

__all__ = [
    "Completion",
    "DecodeParams",
    "Engine",
    "Progress",
    "ProgressCallback",
    "PromptRequest",
    "QuestionStats",
    "SampleStats",
    "SamplingParams",
    "Shard",
    "check_samples",
    "make_engine",
    "merge_shards",
    "sample_problems",
    "select_shard",
]


def make_engine(
    model_cfg: ModelConfig, sampling_cfg: SamplingConfig, model_path: str | None = None
) -> Engine:
    """Load the model (`model_path`, else `model_cfg.name_or_path`) into the configured engine."""
    path = model_path or model_cfg.name_or_path
    if sampling_cfg.engine == "vllm":
        from irpo.models import resolve_model_path
        from irpo.sampling.vllm import VllmEngine

        return VllmEngine(
            resolve_model_path(path),
            dtype=model_cfg.dtype,
            chat_template=model_cfg.chat_template,
            trust_remote_code=model_cfg.trust_remote_code,
            **sampling_cfg.vllm,
        )
    from irpo.models import load_model, load_tokenizer
    from irpo.sampling.transformers_engine import TransformersEngine

    tokenizer = load_tokenizer(path, trust_remote_code=model_cfg.trust_remote_code)
    model = load_model(
        path,
        dtype=sampling_dtype(model_cfg, path, sampling_cfg.batch_size),
        device=model_cfg.device,
        trust_remote_code=model_cfg.trust_remote_code,
    )
    return TransformersEngine(
        model,
        tokenizer,
        chat_template=model_cfg.chat_template,
        batch_size=sampling_cfg.batch_size,
        prefill_tokens=sampling_cfg.prefill_tokens,
    )


def sampling_dtype(model_cfg: ModelConfig, path: str, rows: int) -> str:
    """`model.dtype`, or for `auto` on a CPU the format its linear layers run fastest in at
    `rows` rows a step, measured on this machine (`irpo.precision`)."""
    from irpo.models import pick_device

    if model_cfg.dtype != "auto" or pick_device(model_cfg.device) != "cpu":
        return model_cfg.dtype
    from irpo.models import load_model_config
    from irpo.precision import cpu_prefers_bf16

    config = load_model_config(path, trust_remote_code=model_cfg.trust_remote_code)
    return "bfloat16" if cpu_prefers_bf16(config, rows, purpose="sampling") else "float32"
