"""The trainer on tiny in-process models: exact values against hand-written computations."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from irpo.config import TrainConfig
from irpo.errors import IrpoError
from irpo.losses import dpo_loss, sequence_logps
from irpo.models import build_char_tokenizer, build_llama, save_model
from irpo.records import Pair, read_jsonl, write_jsonl
from irpo.train import (
    SequenceScorer,
    SftExample,
    compute_reference_logps,
    train_preference,
    train_sft,
)
from irpo.train.batching import build_rows, pair_rows
from irpo.train.plan import make_plan

TOKENIZER = build_char_tokenizer()


def encode(text: str, *, bos: bool = False) -> list[int]:
    ids = TOKENIZER(text, add_special_tokens=bos)["input_ids"]
    return list(ids) if bos else [*ids, TOKENIZER.eos_token_id]


def make_pairs(n: int) -> list[Pair]:
    """n arithmetic questions; the winner is the right sum, the loser a wrong one of other length."""
    pairs = []
    for a in range(n):
        prompt = f"{a}+{a + 3}="
        pairs.append(
            Pair(
                problem_id=str(a),
                prompt=prompt,
                prompt_ids=encode(prompt, bos=True),
                chosen=str(2 * a + 3),
                chosen_ids=encode(str(2 * a + 3)),
                rejected=f"{a}{a}",
                rejected_ids=encode(f"{a}{a}{a}"[: 1 + a % 3]),
                chosen_index=0,
                rejected_index=1,
            )
        )
    return pairs


def tiny_cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "learning_rate": 1e-2,
        "batch_size": 4,
        "micro_batch_size": 2,
        "max_steps": 4,
        "mixed_precision": "no",
        "max_grad_norm": None,
    }
    return TrainConfig(**{**base, **kw})


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def log_rows(out: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(out / "train_log.jsonl"))


def manual_logp(model: Any, prompt: list[int], response: list[int]) -> float:
    """log M(response | prompt), one unpadded sequence, straight from the full logits."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logps = model(input_ids=ids).logits[0, :-1].log_softmax(-1)  # [T-1, V]
    positions = range(len(prompt) - 1, len(prompt) + len(response) - 1)
    return sum(logps[t, ids[0, t + 1]].item() for t in positions)


# --------------------------------------------------------------------------- batching, scoring


def test_rows_are_right_padded_with_a_response_mask() -> None:
    rows = build_rows([[1, 5], [1]], [[7, 2], [8, 9, 2]], pad_id=0)
    assert rows.input_ids.tolist() == [[1, 5, 7, 2], [1, 8, 9, 2]]
    assert rows.response_mask.tolist() == [[False, False, True, True], [False, True, True, True]]
    assert rows.response_lengths.tolist() == [2, 3]
    assert rows.num_tokens == 8
    rows = build_rows([[1, 5, 6]], [[2]], pad_id=0)
    assert rows.input_ids.tolist() == [[1, 5, 6, 2]]


def test_pair_rows_put_chosen_then_rejected() -> None:
    pairs = make_pairs(2)
    rows = pair_rows(pairs)
    assert rows.input_ids.shape[0] == 4
    assert rows.response_lengths.tolist() == [
        len(pairs[0].chosen_ids),
        len(pairs[1].chosen_ids),
        len(pairs[0].rejected_ids),
        len(pairs[1].rejected_ids),
    ]


def test_empty_response_is_an_error() -> None:
    with pytest.raises(IrpoError, match="row 0: empty response"):
        build_rows([[1, 2]], [[]])


def test_response_only_logits_equal_full_logits_values_and_gradients() -> None:
    model = build_llama(TOKENIZER, hidden_size=32, num_layers=2, num_heads=2, seed=1)
    rows = pair_rows(make_pairs(3))
    fast = SequenceScorer(model, response_only=True)
    got = fast(rows.input_ids, rows.response_mask)
    got.sum().backward()
    grads_fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    # The definition: full logits, shifted, summed over the response positions.
    logits = model(input_ids=rows.input_ids).logits
    want = sequence_logps(logits[:, :-1], rows.input_ids[:, 1:], rows.response_mask[:, 1:])
    want.sum().backward()
    assert fast.response_only  # the fast path was taken, not the fallback
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    for n, p in model.named_parameters():
        assert torch.allclose(grads_fast[n], p.grad, atol=1e-5), n
    full = SequenceScorer(model, response_only=False)(rows.input_ids, rows.response_mask)
    assert torch.allclose(full, want, atol=1e-6, rtol=0)


def test_scorer_falls_back_to_full_logits_when_the_head_is_not_reached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = build_llama(TOKENIZER, hidden_size=32, num_layers=2, num_heads=2, seed=1)
    rows = pair_rows(make_pairs(2))
    want = SequenceScorer(model, response_only=False)(rows.input_ids, rows.response_mask)
    decoy = torch.nn.Linear(32, len(TOKENIZER))  # a head the forward never calls
    model.get_output_embeddings = lambda: decoy  # type: ignore[method-assign]
    scorer = SequenceScorer(model, response_only=True)
    got = scorer(rows.input_ids, rows.response_mask)
    assert not scorer.response_only
    assert "scoring from full logits" in caplog.text
    assert torch.equal(got, want)


def test_reference_logps_equal_a_manual_unbatched_computation() -> None:
    model = build_llama(TOKENIZER, hidden_size=32, num_layers=2, num_heads=2, seed=2)
    pairs = make_pairs(5)
    compute_reference_logps(model, pairs, batch_size=2)
    for p in pairs:
        assert p.ref_chosen_logp == pytest.approx(
            manual_logp(model, p.prompt_ids, p.chosen_ids), abs=1e-5
        )
        assert p.ref_rejected_logp == pytest.approx(
            manual_logp(model, p.prompt_ids, p.rejected_ids), abs=1e-5
        )
    assert model.training  # the mode is restored after the no-grad pass


# --------------------------------------------------------------------------- the data plan


def test_plan_walks_seeded_permutations_and_splits_micro_batches() -> None:
    plan = make_plan(
        6, batch_size=4, micro_batch_size=1, num_processes=2, epochs=2.0, max_steps=None, seed=3
    )
    assert (plan.total_steps, plan.accumulation_steps) == (3, 2)  # ceil(2 * 6 / 4)
    stream = [i for s in range(3) for i in plan.global_batch(s)]
    assert sorted(stream[:6]) == list(range(6)) and sorted(stream[6:]) == list(range(6))
    assert stream[:6] != stream[6:]  # each epoch its own permutation
    assert plan.epoch_at(1) == pytest.approx(4 / 6)
    lengths = [5, 1, 4, 2, 6, 3]
    p0 = plan.local_micro_batches(0, 0, lengths.__getitem__)
    p1 = plan.local_micro_batches(0, 1, lengths.__getitem__)
    by_length = sorted(plan.global_batch(0), key=lambda i: lengths[i])
    assert p0 == [[by_length[0]], [by_length[2]]] and p1 == [[by_length[1]], [by_length[3]]]
    with pytest.raises(IrpoError, match="multiple of"):
        make_plan(
            6, batch_size=4, micro_batch_size=4, num_processes=2, epochs=1, max_steps=None, seed=0
        )


def test_only_complete_states_count(tmp_path: Path) -> None:
    from irpo.train.checkpoint import TrainDir

    tdir = TrainDir(tmp_path)
    assert tdir.latest_state() is None
    for name, complete in [
        ("step-00000002", True),
        ("step-00000004", False),
        (".tmp-step-00000006", True),
    ]:
        (tdir.checkpoints / name).mkdir(parents=True)
        if complete:
            (tdir.checkpoints / name / "state.json").write_text('{"step": 0}')
    # step 4 was cut short before its marker; the temporary folder is not a state at all.
    assert tdir.latest_state() == (2, tdir.checkpoints / "step-00000002")


# --------------------------------------------------------------------------- training


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "m0"
    save_model(
        build_llama(TOKENIZER, hidden_size=32, num_layers=2, num_heads=2, seed=0), TOKENIZER, path
    )
    return path


def test_irpo_loss_decreases_and_starts_at_log_2(model_dir: Path, tmp_path: Path) -> None:
    pairs = make_pairs(4)  # batch = all pairs: every logged loss is over the same set
    train_preference(str(model_dir), pairs, tiny_cfg(max_steps=8), tmp_path / "out", seed=0)
    rows = log_rows(tmp_path / "out")
    assert [r["step"] for r in rows] == list(range(1, 9))
    first = rows[0]
    # Step 1: the policy is the reference, so every reward is 0 and the DPO term is log 2.
    assert first["dpo"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["chosen_rewards"] == pytest.approx(0.0, abs=1e-6)
    assert first["margin"] == pytest.approx(0.0, abs=1e-6)
    assert first["loss"] == pytest.approx(first["dpo"] + first["nll"], abs=1e-6)
    assert first["lr"] == 1e-2 and first["epoch"] == 1.0
    assert rows[-1]["loss"] < 0.5 * first["loss"]
    assert rows[-1]["margin"] > 0 and rows[-1]["reward_accuracy"] == 1.0
    assert pairs[0].ref_chosen_logp is None  # the caller's pairs are not modified


def test_alpha_zero_equals_a_hand_written_dpo_loop(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    pairs = make_pairs(4)
    cfg = tiny_cfg(
        alpha=0.0, beta=0.5, max_steps=3, weight_decay=0.0, batch_size=4, micro_batch_size=4
    )
    result = train_preference(str(model_dir), pairs, cfg, tmp_path / "out", seed=0)
    rows = log_rows(tmp_path / "out")
    assert all(r["loss"] == pytest.approx(r["dpo"], abs=1e-7) for r in rows)

    # The reference implementation: full logits, one pair at a time, plain AdamW.
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    refs = [
        (
            manual_logp(model, p.prompt_ids, p.chosen_ids),
            manual_logp(model, p.prompt_ids, p.rejected_ids),
        )
        for p in pairs
    ]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        losses = []
        for p, (rc, rr) in zip(pairs, refs, strict=True):

            def logp(resp: list[int], p: Pair = p) -> torch.Tensor:
                ids = torch.tensor([p.prompt_ids + resp])
                mask = torch.zeros_like(ids, dtype=torch.bool)
                mask[0, len(p.prompt_ids) :] = True
                return sequence_logps(model(input_ids=ids).logits[:, :-1], ids[:, 1:], mask[:, 1:])

            losses.append(
                dpo_loss(
                    logp(p.chosen_ids),
                    logp(p.rejected_ids),
                    torch.tensor([rc]),
                    torch.tensor([rr]),
                    0.5,
                )
            )
        opt.zero_grad()
        torch.cat(losses).mean().backward()
        opt.step()
    want = {k: v.detach() for k, v in model.state_dict().items()}
    got = load_weights(result.model_dir)
    want = {k: v for k, v in want.items() if k in got}
    assert max_diff(got, want) < 1e-5


def test_nan_loss_stops_and_keeps_the_last_good_state(model_dir: Path, tmp_path: Path) -> None:
    pairs = make_pairs(12)
    cfg = tiny_cfg(max_steps=5)
    plan = make_plan(
        12, batch_size=4, micro_batch_size=2, num_processes=1, epochs=1, max_steps=5, seed=0
    )
    # A pair first seen at step 3 (0-based 2) gets a NaN reference: steps 1-2 are fine.
    seen = set(plan.global_batch(0)) | set(plan.global_batch(1))
    bad = next(i for i in plan.global_batch(2) if i not in seen)
    compute_reference_logps(
        build_llama(TOKENIZER, hidden_size=32, num_layers=2, num_heads=2, seed=0),
        pairs,
        batch_size=8,
    )
    pairs[bad].ref_chosen_logp = float("nan")
    out = tmp_path / "nan"
    with pytest.raises(IrpoError, match=r"training step 3: the loss is nan .*step 2\)"):
        train_preference(str(model_dir), pairs, cfg, out, seed=0)
    assert not (out / "result.json").exists() and not (out / "model").exists()
    assert [r["step"] for r in log_rows(out)] == [1, 2]
    state = out / "checkpoints" / "step-00000002"
    assert (state / "state.json").exists()

    good = train_preference(
        str(model_dir), pairs, cfg.model_copy(update={"max_steps": 2}), tmp_path / "two", seed=0
    )
    saved = {k.removeprefix("model."): v for k, v in load_weights(state).items()}
    assert max_diff(saved, load_weights(good.model_dir)) == 0.0


def test_resume_equals_an_uninterrupted_run(model_dir: Path, tmp_path: Path) -> None:
    pairs = make_pairs(8)
    cfg = tiny_cfg(max_steps=6, save_every=2, schedule="cosine", warmup_steps=2, weight_decay=0.1)
    full = train_preference(str(model_dir), pairs, cfg, tmp_path / "full", seed=5)

    class Crash(Exception):
        pass

    def crash_at_step_3(row: dict[str, Any]) -> None:
        if row["step"] == 3:
            raise Crash

    out = tmp_path / "resumed"
    with pytest.raises(Crash):
        train_preference(str(model_dir), pairs, cfg, out, seed=5, log_fn=crash_at_step_3)
    assert not (out / "result.json").exists()
    assert [r["step"] for r in log_rows(out)] == [1, 2, 3]
    resumed_rows: list[dict[str, Any]] = []
    resumed = train_preference(str(model_dir), pairs, cfg, out, seed=5, log_fn=resumed_rows.append)
    assert [r["step"] for r in resumed_rows] == [3, 4, 5, 6]  # continued from the step-2 state
    assert max_diff(load_weights(full.model_dir), load_weights(resumed.model_dir)) <= 1e-6
    keys = ("loss", "dpo", "nll", "margin", "lr", "grad_norm")
    for a, b in zip(log_rows(tmp_path / "full"), log_rows(out), strict=True):
        assert a["step"] == b["step"]
        for k in keys:
            assert a[k] == pytest.approx(b[k], abs=1e-6), (a["step"], k)
    assert not (out / "checkpoints").exists()  # a finished training keeps no optimizer state

    # A finished training is returned as is, without training again.
    again: list[dict[str, Any]] = []
    result = train_preference(str(model_dir), pairs, cfg, out, seed=5, log_fn=again.append)
    assert again == [] and result.steps == 6 and result.model_dir == resumed.model_dir


def test_resume_with_other_settings_is_an_error(model_dir: Path, tmp_path: Path) -> None:
    pairs = make_pairs(4)
    out = tmp_path / "out"

    def stop(row: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_preference(str(model_dir), pairs, tiny_cfg(), out, seed=0, log_fn=stop)
    with pytest.raises(IrpoError, match=r"other settings \(changed: train.learning_rate\)"):
        train_preference(str(model_dir), pairs, tiny_cfg(learning_rate=1e-3), out, seed=0)
    result = train_preference(
        str(model_dir), pairs, tiny_cfg(learning_rate=1e-3), out, seed=0, resume=False
    )
    assert result.steps == 4


def test_checkpoint_loads_with_from_pretrained(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pairs = make_pairs(4)
    result = train_preference(
        str(model_dir), pairs, tiny_cfg(max_steps=2), tmp_path / "out", seed=0
    )
    assert result.model_dir == tmp_path / "out" / "model"
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    tok = AutoTokenizer.from_pretrained(result.model_dir)
    assert tok("1+2=")["input_ids"] == encode("1+2=", bos=True)
    trained = load_weights(result.model_dir)
    initial = load_weights(model_dir)
    assert max_diff(trained, initial) > 1e-4  # it trained
    state = {k: v for k, v in model.state_dict().items() if k in trained}
    assert max_diff(state, trained) == 0.0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model",
        "reference_logps.jsonl",
        "result.json",
        "settings.json",
        "train_log.jsonl",
    ]
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["steps"] == 2 and saved["num_examples"] == 4


def test_gradient_checkpointing_gives_the_same_steps(model_dir: Path, tmp_path: Path) -> None:
    pairs = make_pairs(4)
    assert TrainConfig().gradient_checkpointing  # on by default
    off, on = (
        train_preference(
            str(model_dir),
            pairs,
            tiny_cfg(max_steps=2, gradient_checkpointing=checkpointing),
            tmp_path / str(checkpointing),
            seed=0,
        )
        for checkpointing in (False, True)
    )
    assert max_diff(load_weights(off.model_dir), load_weights(on.model_dir)) < 1e-6


def test_trainings_with_other_precisions_follow_each_other(model_dir: Path, tmp_path: Path) -> None:
    pairs = make_pairs(4)
    train_preference(str(model_dir), pairs, tiny_cfg(max_steps=2), tmp_path / "fp32", seed=0)
    bf16 = train_preference(
        str(model_dir),
        pairs,
        tiny_cfg(max_steps=2, mixed_precision="bf16"),
        tmp_path / "bf16",
        seed=0,
    )
    rows32, rows16 = log_rows(tmp_path / "fp32"), log_rows(tmp_path / "bf16")
    # bf16 autocast changes the numbers a little, not the step-1 loss (log 2 + the same NLL).
    assert rows16[0]["loss"] == pytest.approx(rows32[0]["loss"], rel=2e-2)
    assert rows16[0]["loss"] != rows32[0]["loss"]
    weights = load_weights(bf16.model_dir)
    assert all(w.dtype == torch.float32 for w in weights.values())  # float32 master weights
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert max_diff(weights, load_weights(model_dir)) > 1e-3  # it trained
    assert rows16[1]["loss"] < rows16[0]["loss"]


def test_sft_reduces_the_nll(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    examples = [SftExample(p.prompt_ids, p.chosen_ids) for p in make_pairs(8)]

    def mean_nll(folder: Path) -> float:
        model = AutoModelForCausalLM.from_pretrained(folder)
        return sum(
            -manual_logp(model, e.prompt_ids, e.response_ids) / len(e.response_ids)
            for e in examples
        ) / len(examples)

    cfg = tiny_cfg(batch_size=8, micro_batch_size=4, max_steps=10)
    result = train_sft(str(model_dir), examples, cfg, tmp_path / "sft", seed=0)
    rows = log_rows(tmp_path / "sft")
    before, after = mean_nll(model_dir), mean_nll(result.model_dir)
    assert rows[0]["loss"] == pytest.approx(before, abs=1e-5)  # step 1 is the starting model
    assert after < 0.6 * before
    assert set(rows[0]) >= {"loss", "nll", "policy_logps", "lr", "tokens_per_s", "step", "epoch"}


def test_lora_is_merged_into_a_plain_checkpoint(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft", reason="LoRA needs the optional extra irpo[peft]")
    cfg = tiny_cfg(
        max_steps=2, lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    )
    result = train_preference(str(model_dir), make_pairs(4), cfg, tmp_path / "lora", seed=0)
    trained, initial = load_weights(result.model_dir), load_weights(model_dir)
    assert trained.keys() == initial.keys()  # no adapter weights: a plain model
    changed = {k for k in trained if not torch.equal(trained[k], initial[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)


# --------------------------------------------------------------------------- the command


def invoke(args: list[str]) -> Any:
    import typer

    from irpo.cli import app

    # Typer runs a one-command app without the command's name; the full CLI has several.
    is_group = isinstance(typer.main.get_command(app), typer.core.TyperGroup)
    return CliRunner().invoke(app, ["train", *args] if is_group else args)


def test_cli_train_irpo_then_sft_from_its_pairs(model_dir: Path, tmp_path: Path) -> None:
    pairs_file = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_file, (p.to_dict() for p in make_pairs(4)))
    sets = [
        "--set",
        "train.max_steps=2",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.learning_rate=0.01",
    ]
    res = invoke(
        [
            str(pairs_file),
            "--model",
            str(model_dir),
            "--out",
            str(tmp_path / "dpo"),
            "--method",
            "dpo",
            *sets,
        ]
    )
    assert res.exit_code == 0, res.output
    rows = log_rows(tmp_path / "dpo")
    assert len(rows) == 2 and all(r["loss"] == pytest.approx(r["dpo"], abs=1e-7) for r in rows)
    assert "model" in res.output
    assert (tmp_path / "dpo" / "config.yaml").exists()

    res = invoke(
        [
            str(pairs_file),
            "--model",
            str(model_dir),
            "--out",
            str(tmp_path / "sft"),
            "--method",
            "sft",
            *sets,
        ]
    )
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "sft" / "result.json").read_text())
    assert result["num_examples"] == 4  # one example per distinct (prompt, chosen)

    res = invoke(
        [
            str(pairs_file),
            "--model",
            str(model_dir),
            "--out",
            str(tmp_path / "x"),
            "--set",
            "train.bogus=1",
        ]
    )
    assert res.exit_code == 2 and "train.bogus: unknown key" in res.output
