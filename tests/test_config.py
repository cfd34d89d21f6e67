from __future__ import annotations

from pathlib import Path

import pytest

from irpo.config import RunConfig, dump_config, load_config, parse_override
from irpo.errors import IrpoError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_papers_settings() -> None:
    config = load_config(None)
    assert config.sampling.num_samples == 30
    assert config.sampling.temperature == 0.8
    assert config.pairs.pairs_per_question == 10
    assert config.train.beta == 0.1
    assert config.train.alpha == 1.0
    assert config.train.learning_rate == 7e-7
    assert config.train.nll_normalization == "sequence"
    assert config.loop.reference == "current"


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "sampling:\n  temperature: 1.0\n  num_samples: 4\ntrain:\n  beta: 0.5\n")
    config = load_config(
        path, ["sampling.temperature=1.3", "loop.method=dpo", "task.options.steps=3"]
    )
    assert config.sampling.temperature == 1.3
    assert config.sampling.num_samples == 4
    assert config.train.beta == 0.5
    assert config.loop.method == "dpo"
    assert config.task.options == {"steps": 3}


def test_override_values_are_yaml_typed() -> None:
    assert parse_override("a.b=1.5") == (["a", "b"], 1.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=[0.8, 1.3]") == (["a"], [0.8, 1.3])
    assert parse_override("a=hello world") == (["a"], "hello world")
    with pytest.raises(IrpoError, match="expected KEY=VALUE"):
        parse_override("sampling.temperature")


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "sampling:\n  temprature: 1.0\n")
    with pytest.raises(IrpoError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: invalid configuration\n  sampling.temprature: unknown key"


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  beta: lots\n")
    with pytest.raises(IrpoError, match=r"train\.beta: Input should be a valid number"):
        load_config(path)


def test_out_of_range_is_named() -> None:
    with pytest.raises(
        IrpoError, match=r"sampling\.num_samples: Input should be greater than or equal to 1"
    ):
        load_config(None, ["sampling.num_samples=0"])


def test_bad_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sampling:\n  temperature: [1.0\n")
    with pytest.raises(IrpoError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


def test_missing_file() -> None:
    with pytest.raises(IrpoError, match=r"nope\.yaml: config file not found"):
        load_config("nope.yaml")


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(IrpoError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_batch_multiple_of_micro_batch() -> None:
    with pytest.raises(
        IrpoError,
        match=r"train\.batch_size \(10\) must be a multiple of train\.micro_batch_size \(4\)",
    ):
        load_config(None, ["train.batch_size=10"])


def test_scratch_model_needs_seed_section() -> None:
    with pytest.raises(IrpoError, match="'scratch' and a seed_model section go together"):
        load_config(None, ["model.name_or_path=scratch"])
    config = load_config(None, ["model.name_or_path=scratch", "seed_model.steps=7"])
    assert config.seed_model is not None and config.seed_model.steps == 7


def test_per_iteration_temperature() -> None:
    config = load_config(None, ["sampling.temperatures=[0.8, 0.8, 1.3]"])
    assert [config.sampling.temperature_for(t) for t in range(5)] == [0.8, 0.8, 1.3, 1.3, 1.3]


def test_dump_round_trips() -> None:
    import yaml

    config = load_config(None, ["seed=3", "pairs.order=shortest"])
    again = RunConfig.model_validate(yaml.safe_load(dump_config(config)))
    assert again == config


def test_yaml_words_that_look_boolean(tmp_path: Path) -> None:
    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    assert (
        load_config(write(tmp_path, "train:\n  mixed_precision: no\n")).train.mixed_precision
        == "no"
    )
    assert (
        load_config(None, ["sampling.stop_at_final_answer=no"]).sampling.stop_at_final_answer
        is False
    )
    assert load_config(None, ["model.trust_remote_code=true"]).model.trust_remote_code is True
