"""`irpo eval`: the evaluation stage on its own (greedy, maj@K, pass@K)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from irpo.cli.app import PANEL_STAGES, app, command
from irpo.cli.options import (
    ConfigOpt,
    LimitOpt,
    ModelOpt,
    SetOpt,
    ShardOpt,
    SourceOpt,
    SplitOpt,
    TaskOpt,
    TaskOptionsOpt,
    engine_for,
    load_problems,
    load_run_config,
    model_of,
    sampling_progress,
    shard_of,
    task_of,
)

if TYPE_CHECKING:
    from irpo.evaluate import EvalResult


@app.command("eval", rich_help_panel=PANEL_STAGES)
@command
def eval_(
    model: ModelOpt = None,
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    options: TaskOptionsOpt = None,
    maj: Annotated[
        int | None,
        typer.Option("--maj", min=0, help="K for maj@K and pass@K (default: eval.maj_k; 0: none)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Metrics JSON (samples are kept beside it).")
    ] = None,
    shard: ShardOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Greedy accuracy, maj@K, pass@K and the parse-failure rate of a model on held-out data.

    With --shard, only that shard's samples are drawn (beside --out); `irpo run` merges them.
    """
    from irpo.errors import IrpoError
    from irpo.evaluate import evaluate_model, sample_for_eval

    cfg = load_run_config(config, overrides)
    if maj is not None:
        cfg.eval.maj_k = maj
    the_task = task_of(cfg, task, options)
    problems = load_problems(cfg, the_task, "eval", source=source, split=split, limit=limit)
    the_shard = shard_of(shard, cfg)
    if the_shard is not None and out is None:
        raise IrpoError("--shard needs --out: the shard's samples are written beside it")
    engine = engine_for(cfg, model_of(cfg, model))
    if the_shard is not None and out is not None:
        with sampling_progress(f"evaluating shard {the_shard}") as bar:
            sample_for_eval(
                engine,
                the_task,
                problems,
                cfg.eval,
                out,
                seed=cfg.seed,
                max_new_tokens=cfg.eval_max_new_tokens,
                stop_at_final_answer=cfg.sampling.stop_at_final_answer,
                shard=the_shard,
                progress=bar,
            )
        typer.echo(f"shard {the_shard} sampled beside {out}")
        return
    with sampling_progress("evaluating") as bar:
        result = evaluate_model(
            engine,
            the_task,
            problems,
            cfg.eval,
            seed=cfg.seed,
            out_path=out,
            max_new_tokens=cfg.eval_max_new_tokens,
            stop_at_final_answer=cfg.sampling.stop_at_final_answer,
            progress=bar,
        )

    echo_result(result)
    if out is not None:
        typer.echo(f"metrics: {out}")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def echo_result(result: EvalResult) -> None:
    """The metrics of an evaluation, then the same under each answer mode with rule counts."""
    pct = _pct
    typer.echo(f"{result.num_problems} questions")
    typer.echo(f"greedy accuracy:    {pct(result.greedy_accuracy)}")
    if result.k:
        typer.echo(f"maj@{result.k} accuracy:   {pct(result.maj_accuracy)}")
        typer.echo(f"pass@{result.k} accuracy:  {pct(result.pass_accuracy)}")
    typer.echo(f"parse failure rate: {pct(result.parse_failure_rate)}")
    typer.echo(f"answer mode:        {result.answer_mode} (the numbers above)")
    if not result.modes:
        return
    modes = list(result.modes)
    rows = [("greedy", "greedy_accuracy"), ("parse failures", "parse_failure_rate")]
    if result.k:
        rows[1:1] = [(f"maj@{result.k}", "maj_accuracy"), (f"pass@{result.k}", "pass_accuracy")]
    typer.echo(f"{'by answer mode:':20}" + "".join(f"{m:>10}" for m in modes))
    for label, key in rows:
        typer.echo(f"  {label:18}" + "".join(f"{pct(result.modes[m][key]):>10}" for m in modes))
    for m in modes:
        counts = ", ".join(f"{rule} {n}" for rule, n in result.modes[m]["rules"].items())
        typer.echo(f"  {m} rules: {counts}")
