"""`irpo train`: one training (IRPO, DPO or SFT) on a pairs file, outside the iteration loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irpo.cli.app import SetOption, app, command

DataArg = Annotated[
    Path,
    typer.Argument(
        help="Pairs JSONL. For --method sft: pairs (their distinct chosen responses are the "
        "examples) or rows with prompt_ids and response_ids."
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (model/, logs, states).")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model to train, M_t (default: the config's model.name_or_path)."
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML run configuration.")]
MethodOpt = Annotated[
    str | None,
    typer.Option("--method", help="irpo, dpo (alpha = 0) or sft (default: from loop.method)."),
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume/--no-resume", help="Continue an interrupted training in OUT.")
]


@app.command()
@command
def train(
    data: DataArg,
    out: OutOpt,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    overrides: list[str] | None = SetOption,
    method: MethodOpt = None,
    resume: ResumeOpt = True,
) -> None:
    """Train a model on preference pairs; pairs without reference log-probs get them from it.

    Runs on one device as is, and on several GPUs or nodes under `accelerate launch`
    (docs/DISTRIBUTED.md).
    """
    from irpo.cli.run import progress_bars
    from irpo.config import load_config
    from irpo.train.api import method_of, train_file

    cfg = load_config(config, overrides or [])
    result = train_file(
        data,
        model or cfg.model.name_or_path,
        cfg,
        out,
        method=method or method_of(cfg.loop.method),
        resume=resume,
        progress=progress_bars,
    )
    last = result.final_metrics
    summary = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "dpo", "nll", "margin") if k in last)
    typer.echo(f"trained {result.steps} steps ({summary})")
    typer.echo(f"model: {result.model_dir}")
