"""`irpo.methods`: the one table of training methods, and what it takes to add one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from irpo.config import TrainConfig, load_config
from irpo.errors import IrpoError
from irpo.methods import METHODS, Method, get_method, preference_loss, training_method


def test_the_four_methods_and_what_they_train_on() -> None:
    assert {name: (m.trains_on, m.samples, m.preference) for name, m in METHODS.items()} == {
        "irpo": ("pairs", True, True),
        "dpo": ("pairs", True, True),
        "star": ("correct_samples", True, False),
        "sft_gold": ("gold", False, False),
    }


def test_dpo_fixes_alpha_and_the_others_keep_the_config() -> None:
    cfg = TrainConfig(alpha=0.7, beta=0.2)
    assert get_method("dpo").train_config(cfg).alpha == 0.0
    assert get_method("dpo").train_config(cfg).beta == 0.2
    assert get_method("irpo").train_config(cfg) is cfg
    assert cfg.alpha == 0.7  # the config itself is not changed


def test_unknown_methods_are_refused_by_name() -> None:
    with pytest.raises(IrpoError, match="unknown method 'ipo': expected one of irpo, dpo, star"):
        get_method("ipo")
    with pytest.raises(IrpoError, match=r"loop\.method: unknown method 'ipo'"):
        load_config(None, ["loop.method=ipo"])
    with pytest.raises(IrpoError, match="unknown method 'sft'"):
        load_config(None, ["loop.method=sft"])  # `sft` is for `irpo train` only
    assert training_method("sft") is METHODS["sft_gold"]
    assert training_method("dpo") is METHODS["dpo"]


def test_importing_the_methods_table_imports_no_torch() -> None:
    code = "import sys, irpo.methods, irpo.config; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_new_method_is_one_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering one Method is all a new method needs: the config accepts its name, the loop
    runs its stages with its loss and its training settings, and the training records it."""
    from irpo.loop import run
    from irpo.rundir import RunDir
    from tests.test_loop import tiny_config

    half = Method(
        "half_nll", "IRPO with alpha fixed at 0.5", "pairs", preference_loss, {"alpha": 0.5}
    )
    monkeypatch.setitem(METHODS, half.name, half)
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "half"
    run(tiny_config("loop.method=half_nll", "loop.iterations=1", "train.alpha=3.0"), out)
    runs = RunDir(out)
    assert runs.is_done("iter_0/reference") and runs.is_done("iter_0/train")
    settings = json.loads((runs.iteration(0).train / "settings.json").read_text())
    assert (settings["kind"], settings["train"]["alpha"]) == ("half_nll", 0.5)
    steps = [m for m in runs.metrics() if m["stage"] == "train_step"]
    assert steps
    for m in steps:  # loss = dpo + 0.5 x nll: the method's alpha, not the config's 3.0
        assert m["loss"] == pytest.approx(m["dpo"] + 0.5 * m["nll"], abs=1e-5)
