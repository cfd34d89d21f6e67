"""`irpo reference` and `irpo train`: an iteration's reference pass and training, on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irpo.cli.app import PANEL_STAGES, app, command
from irpo.cli.options import (
    ConfigOpt,
    IterationOpt,
    ModelOpt,
    SetOpt,
    load_run_config,
    model_of,
    progress_bars,
)
from irpo.methods import METHODS, SFT

DataArg = Annotated[
    Path,
    typer.Argument(
        help="Pairs JSONL. For SFT methods: pairs (their distinct chosen responses are the "
        "examples) or rows with prompt_ids and response_ids."
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (model/, logs, states).")]
MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        help=f"A loop.method ({', '.join(METHODS)}) or {SFT} (default: loop.method).",
    ),
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="Reference log-probs of the pairs (`irpo reference`; default: those in the "
        "pairs, else computed under --model first).",
    ),
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume/--no-resume", help="Continue an interrupted training in OUT.")
]


@app.command(rich_help_panel=PANEL_STAGES)
@command
def reference(
    pairs: Annotated[Path, typer.Argument(help="pairs.jsonl written by `irpo pairs`.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The reference file (reference.jsonl) to write.")
    ],
    model: ModelOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Reference log-probs log M(chosen|x), log M(rejected|x) of every pair, under M_t (--model).

    One no-grad pass before training, as the paper's reference M_t is fixed during it.
    """
    from irpo.train.reference import reference_file

    cfg = load_run_config(config, overrides)
    count = reference_file(
        model_of(cfg, model),
        pairs,
        out,
        batch_size=cfg.train.ref_batch_size,
        model_cfg=cfg.model,
    )
    typer.echo(f"reference log-probs of {count} pairs: {out}")


@app.command(rich_help_panel=PANEL_STAGES)
@command
def train(
    data: DataArg,
    out: OutOpt,
    model: ModelOpt = None,
    method: MethodOpt = None,
    iteration: IterationOpt = 0,
    reference: ReferenceOpt = None,
    resume: ResumeOpt = True,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Train M_t (--model) into M_{t+1} on pairs (IRPO, DPO) or their winners (SFT).

    Pairs without reference log-probs get them from M_t first.

    Runs on one device as is, and on several GPUs or nodes under `accelerate launch`
    (docs/DISTRIBUTED.md).
    """
    from irpo.train.jobs import train_file

    cfg = load_run_config(config, overrides)
    result = train_file(
        data,
        model_of(cfg, model),
        cfg,
        out,
        method=method or cfg.loop.method,
        seed=cfg.iteration_seed(iteration),
        reference=reference,
        resume=resume,
        progress=progress_bars,
    )
    last = result.final_metrics
    summary = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "dpo", "nll", "margin") if k in last)
    typer.echo(f"trained {result.steps} steps ({summary})")
    typer.echo(f"model: {result.model_dir}")
