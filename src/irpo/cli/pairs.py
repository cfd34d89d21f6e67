"""`irpo pairs`: verified samples -> preference pairs, on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irpo.cli.app import SetOption, app, command
from irpo.cli.sample import ConfigOpt, LimitOpt, SourceOpt, TaskOpt, _problems, _setup


@app.command()
@command
def pairs(
    samples: Annotated[Path, typer.Argument(help="samples.jsonl written by `irpo sample`.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="The model that produced the samples.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for pairs.jsonl, preference.jsonl, pair_stats.json."
        ),
    ],
    task_name: TaskOpt = None,
    source: SourceOpt = None,
    split: Annotated[
        str, typer.Option(help="Split of the source the samples were drawn from.")
    ] = "train",
    limit: LimitOpt = None,
    config: ConfigOpt = None,
    overrides: list[str] | None = SetOption,
) -> None:
    """Pair correct with wrong samples, K per question (the paper's wrap-around zip)."""
    from irpo.loop import pair_samples, write_pairs
    from irpo.models import load_tokenizer
    from irpo.records import read_samples

    cfg, task = _setup(config, overrides, task_name, None)
    problems = _problems(
        cfg, task, source, split, limit or cfg.task.train_limit, cfg.task.train_source
    )
    tokenizer = load_tokenizer(model, trust_remote_code=cfg.model.trust_remote_code)
    made, stats = pair_samples(task, problems, read_samples(samples), tokenizer, cfg, seed=cfg.seed)
    write_pairs(made, stats, out)
    for key, value in stats.to_dict().items():
        typer.echo(f"{key}: {value}")
    typer.echo(f"wrote {len(made)} pairs to {out / 'pairs.jsonl'}")
