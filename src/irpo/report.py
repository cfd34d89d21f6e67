"""Tables and plots from run directories: `irpo report RUN` and `irpo compare RUN...`.

Everything is read back from the files a run wrote (evals, pair statistics, metrics.jsonl), so a
report can be made for a run that is still going, or long after it finished. Besides the
Markdown, CSV and JSON files, each writes report.html, one self-contained page
(`irpo.report_html`). Error bars are one binomial standard error over the held-out problems for
a single run, and one standard error over runs for runs that differ only in `seed`; per-step
training curves are drawn raw (faint) with an exponential moving average over them.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from irpo.records import read_json, write_json
from irpo.rundir import RunDir
from irpo.stats import PairedDifference, binomial_se, ema, mean_se, paired_difference, verdict

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
    strict_greedy: float | None = None
    """Greedy accuracy under the `strict` answer mode (the "Final answer:" marker only)."""
    flexible_greedy: float | None = None
    """Greedy accuracy under the `flexible` answer mode (the marker, then the fall-backs)."""


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
                strict_greedy=_pct(ev.get("modes", {}).get("strict", {}).get("greedy_accuracy")),
                flexible_greedy=_pct(
                    ev.get("modes", {}).get("flexible", {}).get("greedy_accuracy")
                ),
            )
        )
    return rows


def row_se(r: Row) -> dict[str, float | None]:
    """Binomial standard errors (percentage points) of a row's greedy, maj and pass accuracies
    over its held-out problems; None where the accuracy or the problem count is missing."""
    n = r.eval_problems or 0

    def se(pct: float | None) -> float | None:
        return None if pct is None or n <= 0 else 100.0 * binomial_se(pct / 100.0, n)

    return {"greedy": se(r.greedy), "maj": se(r.maj), "pass_k": se(r.pass_k)}


def _per_question(run: RunDir, t: int) -> dict[str, bool]:
    """problem id -> whether M_t's greedy answer was right, from its eval file."""
    path = run.eval_path(t)
    if not path.exists():
        return {}
    return {
        str(q["problem_id"]): bool(q["greedy_correct"])
        for q in read_json(path).get("per_question") or []
        if q.get("greedy_correct") is not None
    }


def seed_gain(run: RunDir) -> tuple[int, PairedDifference] | None:
    """(t, the last evaluated model M_t minus the seed M_0, greedy): the paired difference on
    the held-out problems both were evaluated on, with its bootstrap interval; None without two
    evaluated models holding per-question results."""
    config = run.load_config()
    last = next(
        (t for t in range(config.loop.iterations, 0, -1) if run.eval_path(t).exists()), None
    )
    if last is None:
        return None
    seed, final = _per_question(run, 0), _per_question(run, last)
    common = [pid for pid in seed if pid in final]
    if not common:
        return None
    diff = paired_difference([final[p] for p in common], [seed[p] for p in common], seed=0)
    return last, diff


def seed_gain_sentence(run: RunDir) -> str | None:
    """The gain of the last model over the seed in words, with its 95 % interval."""
    gain = seed_gain(run)
    if gain is None:
        return None
    t, d = gain
    return (
        f"Greedy accuracy on the {d.problems} held-out problems (paired bootstrap over the "
        f"problems): {verdict(d, f'iter {t}', 'the seed')}."
    )


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
    head += ["strict greedy %", "flexible greedy %"]  # both answer modes, re-scored
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
            _fmt(r.strict_greedy),
            _fmt(r.flexible_greedy),
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


def _accuracy_series(
    rows_of_runs: list[list[Row]], key: str
) -> tuple[list[int], list[float], list[float]]:
    """(models, accuracy %, error bar %) of one run or of replicate runs: a single run's error
    bar is its binomial standard error, several runs' the standard error over the runs."""
    models = sorted({r.model for rows in rows_of_runs for r in rows})
    xs, ys, es = [], [], []
    for t in models:
        at = [r for rows in rows_of_runs for r in rows if r.model == t]
        values = [getattr(r, key) for r in at if getattr(r, key) is not None]
        if not values:
            continue
        if len(at) == 1:
            mean, se = values[0], row_se(at[0])[key]
        else:
            mean, se = mean_se(values)
        xs.append(t)
        ys.append(mean)
        es.append(se or 0.0)
    return xs, ys, es


def plot_accuracy(
    runs: dict[str, list[Row]], path: Path, groups: dict[str, list[str]] | None = None
) -> None:
    """Greedy (solid) and maj@k (dashed) accuracy per model with error bars. `groups` (label ->
    run names) draws replicate runs as one line of means over them; by default each run is its
    own line."""
    plt = _pyplot()
    groups = groups or {name: [name] for name in runs}
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, names) in enumerate(groups.items()):
        members = [runs[n] for n in names]
        color = f"C{i}"  # one colour per run or group: solid greedy, dashed maj@k
        k = next((r.k for rows in members for r in rows if r.k), 0)
        for key, marker, ls, what, dx in (
            ("greedy", "o", "-", "greedy", -0.02),
            ("maj", "s", "--", f"maj@{k}", 0.02),  # nudged apart so that both error bars show
        ):
            if key == "maj" and not k:
                continue
            xs, ys, es = _accuracy_series(members, key)
            ax.errorbar(
                [x + dx for x in xs],
                ys,
                yerr=es,
                marker=marker,
                ls=ls,
                color=color,
                capsize=3,
                label=f"{label} {what}",
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


SMOOTHING_ALPHA = 0.1
"""Weight of the newest step in the EMA drawn over per-step training curves."""

TRAINING_CAPTION = (
    f"Per optimizer step, one colour per iteration: faint, every step; solid, an exponential "
    f"moving average (EMA, alpha {SMOOTHING_ALPHA}, about {round(1 / SMOOTHING_ALPHA)} steps)."
)


def plot_training(metrics: list[dict[str, Any]], path: Path) -> bool:
    """Training curves per iteration (the paper's Fig. 3: chosen/rejected log-probs): each
    step faint, its EMA (`SMOOTHING_ALPHA`) over it."""
    steps = [m for m in metrics if m.get("stage") == "train_step"]
    if not steps:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, title) in zip(axes.flat, TRAIN_CURVES, strict=True):
        for i, t in enumerate(sorted({m["iteration"] for m in steps})):
            pts = [(m["step"], m[key]) for m in steps if m["iteration"] == t and key in m]
            if pts:
                xs, ys = zip(*pts, strict=True)
                color = f"C{i}"
                ax.plot(xs, ys, color=color, alpha=0.25, lw=0.8)
                ax.plot(xs, ema(ys, SMOOTHING_ALPHA), color=color, lw=1.8, label=f"iteration {t}")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8, title=f"EMA, alpha {SMOOTHING_ALPHA}", title_fontsize=8)
    fig.suptitle(
        f"faint: every step; solid: EMA, alpha {SMOOTHING_ALPHA} "
        f"(about {round(1 / SMOOTHING_ALPHA)} steps)",
        fontsize=10,
    )
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
    from irpo.report_html import write_run_page

    images = {name: out / f"{name}.png" for name in ("accuracy", "pairs", "training")}
    write_run_page(run, rows, images, out / "report.html")
    log.info("report written to %s and %s", path, out / "report.html")
    return path


def replicate_groups(runs: dict[str, RunDir]) -> dict[str, list[str]]:
    """Runs whose configurations differ only in `seed`, grouped (label -> run names), in order:
    a group of several runs is one line of means over them; a lone run keeps its name."""
    by_key: dict[str, list[str]] = {}
    for name, run in runs.items():
        cfg = run.load_config().model_dump(mode="json")
        cfg.pop("seed", None)
        by_key.setdefault(repr(sorted(cfg.items())), []).append(name)
    groups: dict[str, list[str]] = {}
    for names in by_key.values():
        label = names[0]
        if len(names) > 1:
            label = f"{runs[names[0]].load_config().loop.method}, {len(names)} seeds"
            if label in groups:
                label += f" ({names[0]}, ...)"
        groups[label] = names
    return groups


def _group_rows(tables: dict[str, list[Row]], groups: dict[str, list[str]]) -> list[list[str]]:
    """Rows of the comparison page's table over seeds: mean ± s.e. over each group's runs."""
    out = []
    for names in groups.values():
        if len(names) < 2:
            continue
        rows = [r for n in names for r in tables[n]]
        for t in sorted({r.model for r in rows}):
            cells = []
            for key in ("greedy", "maj"):
                values = [
                    getattr(r, key) for r in rows if r.model == t and getattr(r, key) is not None
                ]
                if values:
                    mean, se = mean_se(values)
                    cells.append(f"{mean:.1f}" + (f" &plusmn; {se:.1f}" if se is not None else ""))
                else:
                    cells.append("-")
            method = rows[0].method
            out.append(
                [
                    ", ".join(names),
                    method,
                    "seed" if t == 0 else f"iter {t}",
                    str(len(names)),
                    *cells,
                ]
            )
    return out


def compare(run_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Put several runs (e.g. methods from one seed) in one table and one plot."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {Path(d).name: RunDir(d) for d in run_dirs}
    tables = {name: run_table(run) for name, run in runs.items()}
    rows = [r for rs in tables.values() for r in rs]
    _write_table(rows, out)
    groups = replicate_groups(runs)
    plot_accuracy(tables, out / "accuracy.png", groups)
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
    _write_compare_page(runs, tables, groups, out)
    return path


def _write_compare_page(
    runs: dict[str, RunDir],
    tables: dict[str, list[Row]],
    groups: dict[str, list[str]],
    out: Path,
) -> None:
    """COMPARE's report.html, with each run's pair and training plots in `out/runs/`."""
    import re

    from irpo.report_html import write_compare_page

    images = {"accuracy": out / "accuracy.png"}
    plots = out / "runs"
    plots.mkdir(exist_ok=True)
    for name, run in runs.items():
        safe = re.sub(r"[^\w.-]", "_", name)
        if any(r.all_correct is not None for r in tables[name]):
            plot_pair_stats(tables[name], plots / f"{safe}-pairs.png")
            images[f"pairs:{name}"] = plots / f"{safe}-pairs.png"
        if plot_training(run.metrics(), plots / f"{safe}-training.png"):
            images[f"training:{name}"] = plots / f"{safe}-training.png"
    write_compare_page(runs, tables, _group_rows(tables, groups), images, out / "report.html")
