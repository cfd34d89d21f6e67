"""Tables and plots from run directories: `irpo report RUN` and `irpo compare RUN...`.

Everything is read back from the files a run wrote (evals, pair statistics, metrics.jsonl), so a
report can be made for a run that is still going, or long after it finished.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from irpo.records import read_json, write_json
from irpo.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One model of a run: M_0 is the seed, M_t the model after iteration t-1."""

    run: str
    method: str
    model: int
    greedy: float | None
    maj: float | None
    pass_k: float | None
    k: int
    parse_failures: float | None
    eval_problems: int | None
    pairs: int | None
    all_correct: int | None
    mixed: int | None
    all_wrong: int | None
    train_examples: int | None


def _pct(x: Any) -> float | None:
    return None if x is None else round(100.0 * float(x), 2)


def run_table(run: RunDir) -> list[Row]:
    """One row per evaluated model of the run, in order."""
    config = run.load_config()
    rows = []
    for t in range(config.loop.iterations + 1):
        if not run.eval_path(t).exists():
            continue  # not evaluated (eval.on_train_iterations: false) or not yet
        ev = read_json(run.eval_path(t))
        stats: dict[str, Any] = {}
        examples = None
        if t > 0:
            it = run.iteration(t - 1)
            if it.pair_stats.exists():
                stats = read_json(it.pair_stats)
            examples = run.stage_info(f"iter_{t - 1}/train").get("examples")
        rows.append(
            Row(
                run=run.root.name,
                method=config.loop.method,
                model=t,
                greedy=_pct(ev.get("greedy_accuracy")),
                maj=_pct(ev.get("maj_accuracy")),
                pass_k=_pct(ev.get("pass_accuracy")),
                k=int(ev.get("k") or 0),
                parse_failures=_pct(ev.get("parse_failure_rate")),
                eval_problems=ev.get("num_problems"),
                pairs=stats.get("pairs"),
                all_correct=stats.get("all_correct"),
                mixed=stats.get("mixed"),
                all_wrong=stats.get("all_wrong"),
                train_examples=examples,
            )
        )
    return rows


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.1f}"
    return str(x)


def markdown_table(rows: list[Row], *, with_run: bool = False) -> str:
    k = max((r.k for r in rows), default=0)
    # "trained on": preference pairs (irpo, dpo) or SFT examples (star, sft_gold) of the
    # iteration that made the model.
    head = ["model", "greedy %", f"maj@{k} %", f"pass@{k} %", "parse fail %", "trained on"]
    if with_run:
        head = ["run", "method", *head]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            "seed" if r.model == 0 else f"iter {r.model}",
            _fmt(r.greedy),
            _fmt(r.maj) if r.k else "-",
            _fmt(r.pass_k) if r.k else "-",
            _fmt(r.parse_failures),
            _fmt(r.pairs if r.pairs is not None else r.train_examples),
        ]
        if with_run:
            cells = [r.run, r.method, *cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_table(rows: list[Row], out: Path) -> None:
    write_json(out / "table.json", [asdict(r) for r in rows])
    with (out / "table.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(Row.__dataclass_fields__))
        writer.writeheader()
        for r in rows:
            writer.writerow(asdict(r))


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(runs: dict[str, list[Row]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, rows) in enumerate(runs.items()):
        xs = [r.model for r in rows]
        color = f"C{i}"  # one colour per run: solid greedy, dashed maj@k
        ax.plot(xs, [r.greedy for r in rows], marker="o", color=color, label=f"{name} greedy")
        if any(r.k for r in rows):
            ax.plot(
                xs,
                [r.maj for r in rows],
                marker="s",
                ls="--",
                color=color,
                label=f"{name} maj@{rows[0].k}",
            )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("model (0 = seed, t = after iteration t)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pair_stats(rows: list[Row], path: Path) -> None:
    plt = _pyplot()
    data = [r for r in rows if r.model > 0 and r.all_correct is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r.model - 1 for r in data]
    bottom = [0] * len(data)
    for label, values in (
        ("all correct", [r.all_correct or 0 for r in data]),
        ("mixed", [r.mixed or 0 for r in data]),
        ("all wrong", [r.all_wrong or 0 for r in data]),
    ):
        ax.bar(xs, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("iteration")
    ax.set_ylabel("training questions")
    ax.set_xticks(xs)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


TRAIN_CURVES = (
    ("loss", "loss"),
    ("policy_chosen_logps", "policy log-prob of chosen"),
    ("policy_rejected_logps", "policy log-prob of rejected"),
    ("reward_accuracy", "reward accuracy"),
)


def plot_training(metrics: list[dict[str, Any]], path: Path) -> bool:
    """Training curves per iteration (the paper's Fig. 3: chosen/rejected log-probs)."""
    steps = [m for m in metrics if m.get("stage") == "train_step"]
    if not steps:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, title) in zip(axes.flat, TRAIN_CURVES, strict=True):
        for t in sorted({m["iteration"] for m in steps}):
            pts = [(m["step"], m[key]) for m in steps if m["iteration"] == t and key in m]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=f"iteration {t}")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- reports


def write_report(run_dir: str | Path) -> Path:
    """Write RUN/report/REPORT.md with plots and table.csv/json; return the Markdown path."""
    run = RunDir(run_dir)
    config = run.load_config()
    rows = run_table(run)
    out = run.report_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_table(rows, out)
    plot_accuracy({run.root.name: rows}, out / "accuracy.png")
    plot_pair_stats(rows, out / "pairs.png")
    has_train = plot_training(run.metrics(), out / "training.png")

    parts = [
        f"# Run `{run.root.name}`",
        "",
        f"Method `{config.loop.method}`, task `{config.task.name}`, model "
        f"`{config.model.name_or_path}`, {config.loop.iterations} iteration(s), "
        f"N={config.sampling.num_samples} samples, K={config.pairs.pairs_per_question} pairs, "
        f"beta={config.train.beta}, alpha={config.train.alpha}, lr={config.train.learning_rate}, "
        f"reference={config.loop.reference}.",
        "",
        "## Held-out accuracy",
        "",
        markdown_table(rows),
        "",
        "![accuracy](accuracy.png)",
        "",
    ]
    if any(r.all_correct is not None for r in rows):
        parts += [
            "## Training questions per iteration",
            "",
            "| iteration | all correct | mixed | all wrong | pairs |",
            "|---|---|---|---|---|",
            *[
                f"| {r.model - 1} | {_fmt(r.all_correct)} | {_fmt(r.mixed)} | "
                f"{_fmt(r.all_wrong)} | {_fmt(r.pairs)} |"
                for r in rows
                if r.model > 0
            ],
            "",
            "![pairs](pairs.png)",
            "",
        ]
    if has_train:
        parts += ["## Training curves", "", "![training](training.png)", ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    log.info("report written to %s", path)
    return path


def compare(run_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Put several runs (e.g. methods from one seed) in one table and one plot."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {Path(d).name: run_table(RunDir(d)) for d in run_dirs}
    rows = [r for rs in tables.values() for r in rs]
    _write_table(rows, out)
    plot_accuracy(tables, out / "accuracy.png")
    text = "\n".join(
        [
            "# Comparison",
            "",
            markdown_table(rows, with_run=True),
            "",
            "![accuracy](accuracy.png)",
            "",
        ]
    )
    path = out / "COMPARE.md"
    path.write_text(text, encoding="utf-8")
    return path
