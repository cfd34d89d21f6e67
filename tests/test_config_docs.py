"""Every config field is documented, and docs/CONFIG.md is the reference the code renders."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from pydantic import BaseModel, Field

from irpo.config import RunConfig, SeedModelConfig, TrainConfig, config_reference

CONFIG_MD = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"


def section_models(annotation: object) -> list[type[BaseModel]]:
    """The models inside a field's type: `TrainConfig`, `SeedModelConfig | None`, ..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in section_models(arg)]


def undocumented_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys of the fields without a description, in `model` and every section inside it."""
    missing = []
    for name, field in model.model_fields.items():
        key = prefix + name
        if not (field.description or "").strip():
            missing.append(key)
        for section in section_models(field.annotation):
            missing += undocumented_fields(section, key + ".")
    return missing


def reference_row(key: str) -> str:
    rows = [line for line in config_reference().splitlines() if line.startswith(f"| `{key}` |")]
    assert len(rows) == 1, f"expected one row for {key}, found {len(rows)}"
    return rows[0]


def test_every_field_has_a_description() -> None:
    missing = undocumented_fields(RunConfig)
    assert not missing, (
        "config fields without a description (write a docstring under each field in "
        f"src/irpo/config.py): {', '.join(missing)}"
    )


def test_the_walk_reaches_every_section() -> None:
    keys = {k for k in _all_keys(RunConfig) if "." in k}
    sections = {k.split(".")[0] for k in keys}
    assert sections == {
        "task",
        "model",
        "sampling",
        "pairs",
        "train",
        "eval",
        "loop",
        "seed_model",
        "launch",
    }
    assert "seed_model.hidden_size" in keys  # through `SeedModelConfig | None`
    assert len(_all_keys(RunConfig)) == 96


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        for section in section_models(field.annotation):
            keys += _all_keys(section, prefix + name + ".")
    return keys


def test_attribute_docstrings_are_the_descriptions() -> None:
    assert RunConfig.model_fields["trackers"].description == (
        "Metrics always go to RUN/metrics.jsonl; wandb, tensorboard, mlflow add accelerate's\n"
        "trackers."
    )
    assert TrainConfig.model_fields["alpha"].description == (
        "Weight of the winner's length-normalised NLL (IRPO Eq. 1); 0 gives plain DPO."
    )
    assert SeedModelConfig.model_fields["steps"].description == "Optimizer steps of SFT."


def test_docs_config_md_is_in_step() -> None:
    assert CONFIG_MD.read_text(encoding="utf-8") == config_reference(), (
        "docs/CONFIG.md is out of step with src/irpo/config.py: "
        "run `python -m irpo.config > docs/CONFIG.md`"
    )


def test_reference_rows() -> None:
    text = config_reference()
    assert text.startswith("# Configuration reference\n\n")
    assert "generated from `src/irpo/config.py` by\n`python -m irpo.config`" in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Top level",
        "## `task`",
        "## `model`",
        "## `sampling`",
        "## `pairs`",
        "## `train`",
        "## `eval`",
        "## `loop`",
        "## `seed_model`",
        "## `launch`",
    ]
    assert reference_row("train.beta") == (
        "| `train.beta` | `float` | `0.1` | DPO's beta: scale of the log-ratio margin in "
        "IRPO Eq. 1 (paper: 0.1, tried 0.05-1). |"
    )
    assert reference_row("loop.method").startswith("| `loop.method` | `str` | `irpo` | ")
    assert reference_row("seed").startswith("| `seed` | `int` | `0` | ")
    assert reference_row("trackers").startswith(
        '| `trackers` | `list["jsonl" \\| "wandb" \\| "tensorboard" \\| "mlflow"]` | `[jsonl]` | '
    )
    assert reference_row("train.nll_normalization").startswith(
        '| `train.nll_normalization` | `"sequence" \\| "batch_token"` | `sequence` | '
    )
    assert reference_row("sampling.temperatures").startswith(
        "| `sampling.temperatures` | `list[float] \\| None` | `null` | "
    )
    assert reference_row("train.adam_betas").startswith(
        "| `train.adam_betas` | `tuple[float, float]` | `[0.9, 0.999]` | "
    )
    assert reference_row("task.options").startswith("| `task.options` | `dict[str, Any]` | `{}` | ")
    # multi-line docstrings become one line; `|` inside a description is escaped
    assert reference_row("train.epochs").endswith(
        "ceil(epochs * pairs / batch_size) optimizer steps, unless `max_steps` is set. |"
    )
    assert "at most lcm(\\|W\\|, \\|L\\|) distinct zip pairs" in reference_row(
        "pairs.pairs_per_question"
    )


class _TrainWithNewKnobs(TrainConfig):
    documented_knob: int = 0
    """A field with a docstring, as every field should have."""
    undocumented_knob: int = 0


class _RunWithNewKnobs(RunConfig):
    train: _TrainWithNewKnobs = Field(default_factory=_TrainWithNewKnobs)
    """Training, with two more fields."""


def test_a_field_without_a_docstring_is_caught() -> None:
    assert undocumented_fields(_RunWithNewKnobs) == ["train.undocumented_knob"]
    assert undocumented_fields(_TrainWithNewKnobs, "train.") == ["train.undocumented_knob"]
