"""`irpo pairs`: verified samples -> preference pairs, on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irpo.cli.app import PANEL_STAGES, app, command
from irpo.cli.options import (
    ConfigOpt,
    IterationOpt,
    LimitOpt,
    ModelOpt,
    SetOpt,
    SourceOpt,
    SplitOpt,
    TaskOpt,
    TaskOptionsOpt,
    load_problems,
    load_run_config,
    model_of,
    task_of,
)


@app.command(rich_help_panel=PANEL_STAGES)
@command
def pairs(
    samples: Annotated[Path, typer.Argument(help="samples.jsonl written by `irpo sample`.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for pairs.jsonl, preference.jsonl, pair_stats.json."
        ),
    ],
    model: ModelOpt = None,
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    options: TaskOptionsOpt = None,
    iteration: IterationOpt = 0,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Pair correct with wrong samples, K per question (the paper's wrap-around zip).

    MODEL is the model that produced the samples (its tokenizer renders prompts and gold
    solutions); the source and split are those the samples were drawn from.
    """
    from irpo.models import load_tokenizer
    from irpo.pair_stage import pair_samples, write_pairs
    from irpo.records import read_samples

    cfg = load_run_config(config, overrides)
    the_task = task_of(cfg, task, options)
    problems = load_problems(cfg, the_task, "train", source=source, split=split, limit=limit)
    tokenizer = load_tokenizer(model_of(cfg, model), trust_remote_code=cfg.model.trust_remote_code)
    made, stats = pair_samples(
        the_task,
        problems,
        read_samples(samples),
        tokenizer,
        cfg,
        seed=cfg.iteration_seed(iteration),
    )
    write_pairs(made, stats, out)
    for key, value in stats.to_dict().items():
        typer.echo(f"{key}: {value}")
    typer.echo(f"wrote {len(made)} pairs to {out / 'pairs.jsonl'}")
