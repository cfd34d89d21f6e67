"""What a training is made of: the policy (dtype, checkpointing, LoRA), AdamW, the schedule, and
the accelerate settings that must be chosen before `accelerator.prepare`."""

from __future__ import annotations

import os
from typing import Any

import torch

from irpo.config import ModelConfig, TrainConfig
from irpo.errors import IrpoError
from irpo.train.plan import BatchPlan


def resolve_mixed_precision(
    setting: str,
    model_path: str | None = None,
    *,
    sequences: int = 8,
    length: int = 256,
    trust_remote_code: bool = False,
) -> str:
    """`auto`: bf16 where the GPU supports it; on a CPU, bf16 autocast where a training step of
    the model (`sequences` x `length` tokens, forward and backward) measures faster in
    bfloat16 (`irpo.precision`); else full precision. The master weights and AdamW stay float32
    either way."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in (
        "1",
        "true",
    ):
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if model_path is None:
        return "no"
    from irpo.models import load_model_config
    from irpo.precision import cpu_prefers_bf16

    config = load_model_config(model_path, trust_remote_code=trust_remote_code)
    prefers = cpu_prefers_bf16(
        config, sequences * length, purpose="training (autocast)", train=True, length=length
    )
    return "bf16" if prefers else "no"


def forget_previous_training() -> None:
    """Let this training choose its own precision and accumulation.

    accelerate keeps one state per process and refuses a second `mixed_precision` in it, yet one
    process may train several times (`irpo run`: a seed model in float32, then IRPO in bf16).
    The process group (accelerate's PartialState) is kept.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def load_policy(model_path: str, cfg: TrainConfig, model_cfg: ModelConfig | None) -> Any:
    """The model to train, on the CPU (accelerate moves it).

    Weights are float32 unless `model.dtype` names another: mixed precision computes in bf16
    while AdamW updates float32 master weights, since at the paper's lr 7e-7 most bf16 updates
    would round away.
    """
    from irpo.models import load_model

    dtype = model_cfg.dtype if model_cfg and model_cfg.dtype != "auto" else "float32"
    model = load_model(
        model_path,
        dtype=dtype,
        device="cpu",
        trust_remote_code=bool(model_cfg and model_cfg.trust_remote_code),
    )
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.lora is not None:
        model = _with_lora(model, cfg.lora, cfg.gradient_checkpointing)
    return model


def _with_lora(model: Any, lora: dict[str, Any], gradient_checkpointing: bool) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise IrpoError("train.lora needs the package peft: pip install 'irpo[peft]'") from None
    try:
        config = LoraConfig(task_type="CAUSAL_LM", **lora)
    except TypeError as e:
        raise IrpoError(f"train.lora: {e}") from None
    if gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings: checkpointed inputs need grads
    return get_peft_model(model, config)


def make_optimizer(module: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW on the trainable parameters; weight decay on matrices only (not norms, biases).

    torch's fused kernel where every parameter allows it (CPU or CUDA, floating point): one pass
    over each tensor and no temporaries the size of a parameter (the default per-tensor loop on
    CPU makes several: for SmolLM2-135M's 113 MB embedding, each is 113 MB at the step's peak).
    """
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=cfg.learning_rate,
        betas=cfg.adam_betas,
        fused=fused or None,
    )


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    """Linear warmup over `warmup_steps`, then constant, cosine or linear decay to 0."""
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup", "cosine": "cosine", "linear": "linear"}[
        cfg.schedule
    ]
    return get_scheduler(
        name, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total_steps
    )


def configure_deepspeed(accelerator: Any, cfg: TrainConfig, plan: BatchPlan) -> None:
    """Give DeepSpeed the batch arithmetic of the plan (it would read it from a DataLoader).

    DeepSpeed scales the loss and steps the optimizer itself every `gradient_accumulation_steps`
    backward passes, and clips inside its step.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = plan.micro_batch_size
    ds["gradient_accumulation_steps"] = plan.accumulation_steps
    ds["train_batch_size"] = plan.batch_size
    ds["gradient_clipping"] = cfg.max_grad_norm or 0.0
