"""A seed model trained from scratch: a character-level Llama, SFT on a task's gold solutions.

This is how the embedded demo gets its M_0 without any download: a standard transformers
`LlamaForCausalLM` with a `PreTrainedTokenizerFast`, saved as a normal Hugging Face folder and
trained by irpo's own SFT loop (the same loop that runs the paper's SFT baselines). The result
is cached under IRPO_CACHE, keyed by everything that determines it, so a second run reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from irpo.config import RunConfig, TrainConfig
from irpo.models import (
    build_char_tokenizer,
    build_llama,
    cache_dir,
    encode_prompt,
    encode_response,
    save_model,
)
from irpo.records import atomic_output
from irpo.tasks.base import Task

log = logging.getLogger(__name__)


SCORING_OPTIONS = ("check_steps",)


def seed_key(config: RunConfig) -> str:
    """Everything that determines the seed model: its section, the task and the run seed."""
    assert config.seed_model is not None
    section = config.seed_model.model_dump(mode="json")
    if section["schedule"] == "cosine":
        del section["schedule"]  # the keys of seeds cached before the option existed stay valid
    spec = {
        "seed_model": section,
        "task": config.task.name,
        # options that only change how completions are scored do not change the seed model
        "options": {k: v for k, v in config.task.options.items() if k not in SCORING_OPTIONS},
        "train_source": config.task.train_source,
        "seed": config.seed,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_seed_model(config: RunConfig, task: Task, *, progress: Any = None) -> Path:
    """Return the folder of the cached seed model, training it first when it is not cached."""
    from irpo.train import SftExample, train_sft

    seed_cfg = config.seed_model
    assert seed_cfg is not None
    target = cache_dir() / "seeds" / f"{task.name}-{seed_key(config)}"
    if (target / "config.json").exists():
        log.info("reusing the cached seed model %s", target)
        return target

    problems = task.load(
        config.task.train_source, config.task.train_split, limit=seed_cfg.train_problems
    )
    tokenizer = build_char_tokenizer()
    model = build_llama(
        tokenizer,
        hidden_size=seed_cfg.hidden_size,
        num_layers=seed_cfg.num_layers,
        num_heads=seed_cfg.num_heads,
        max_position_embeddings=seed_cfg.max_position_embeddings,
        seed=config.seed,
    )
    examples = []
    for p in problems:
        gold = task.gold_completion(p)
        if gold is None:
            continue
        _, prompt_ids = encode_prompt(tokenizer, task.prompt(p), "never")
        examples.append(
            SftExample(prompt_ids=prompt_ids, response_ids=encode_response(tokenizer, gold))
        )
    log.info(
        "training the seed model from scratch: %d params, %d examples, %d steps",
        sum(p.numel() for p in model.parameters()),
        len(examples),
        seed_cfg.steps,
    )
    work = target.with_name(target.name + ".work")
    init_dir = work / "init"
    save_model(model, tokenizer, init_dir)
    train_cfg = TrainConfig(
        learning_rate=seed_cfg.learning_rate,
        batch_size=seed_cfg.batch_size,
        micro_batch_size=seed_cfg.batch_size,
        max_steps=seed_cfg.steps,
        warmup_steps=seed_cfg.warmup_steps,
        schedule=seed_cfg.schedule,
        weight_decay=0.1,
        epochs=1000.0,
        max_grad_norm=1.0,
        mixed_precision="no",
        gradient_checkpointing=False,  # a small model: little activation memory to save
        save_every=max(1, seed_cfg.steps // 5),
    )
    result = train_sft(
        str(init_dir), examples, train_cfg, work / "train", seed=config.seed, progress=progress
    )
    with atomic_output(target, folder=True) as tmp:
        shutil.copytree(Path(result.model_dir), tmp, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return target
