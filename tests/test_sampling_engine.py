"""The transformers engine: exact greedy decoding, per-sequence random streams that do not depend
on the batch, and where completions end (EOS, the final-answer line, the token budget)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from irpo.errors import IrpoError
from irpo.models import build_char_tokenizer, load_model, load_tokenizer
from irpo.sampling import transformers_engine
from irpo.sampling.draw import draw_tokens, uniform_stream
from irpo.sampling.engine import Completion, DecodeParams, PromptRequest
from irpo.sampling.slots import SlotCache
from irpo.sampling.transformers_engine import (
    TransformersEngine,
    _can_pack,
    _linear_packed,
    _pack_linears,
)

PROMPTS = [
    "Start with 5. Add 3.",
    "What is 2+2?",
    "Q: a longer prompt, with more characters in it.",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    return load_model(str(tiny_model_dir), device="cpu"), load_tokenizer(str(tiny_model_dir))


def _requests(engine: TransformersEngine, n: int, seed: int = 0) -> list[PromptRequest]:
    return [
        PromptRequest(
            key=f"q{i}",
            prompt_ids=tuple(engine.encode_prompt(p)),
            sample_seeds=tuple(1000 * seed + 10 * i + j for j in range(n)),
        )
        for i, p in enumerate(PROMPTS)
    ]


def _run(engine: TransformersEngine, requests: list[PromptRequest], params: DecodeParams):
    return [(req.key, comps) for req, comps in engine.generate(requests, params)]


def test_greedy_equals_generate(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    params = DecodeParams(temperature=0.0, top_p=1.0, max_new_tokens=24, stop_at_final_answer=False)
    for batch_size in (1, 64):
        engine = TransformersEngine(model, tok, batch_size=batch_size)
        out = _run(engine, _requests(engine, 2), params)
        assert [key for key, _ in out] == ["q0", "q1", "q2"]  # request order
        for (_, comps), prompt in zip(out, PROMPTS, strict=True):
            ids = torch.tensor([engine.encode_prompt(prompt)])
            ref = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24
            )[0, ids.shape[1] :].tolist()
            assert [c.index for c in comps] == [0, 1]
            for c in comps:
                assert c.token_ids == ref
                ended_on_eos = ref[-1] == tok.eos_token_id
                assert c.finish_reason == ("eos" if ended_on_eos else "length")
                assert c.text == tok.decode(ref[:-1] if ended_on_eos else ref)


def test_samples_do_not_depend_on_batch_size(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch 3 runs rows of different questions side by side, refills freed slots and compacts
    the cache; the samples must equal those decoded one at a time."""
    model, tok = tiny
    compactions = []
    shift_left = SlotCache.shift_left
    monkeypatch.setattr(
        SlotCache, "shift_left", lambda self, *a: (compactions.append(a), shift_left(self, *a))
    )
    params = DecodeParams(temperature=1.0, top_p=1.0, max_new_tokens=60, stop_at_final_answer=False)
    runs = {}
    for batch_size in (1, 3, 64):
        engine = TransformersEngine(model, tok, batch_size=batch_size)
        runs[batch_size] = _run(engine, _requests(engine, 4), params)
    # one prompt in the cache at a time: a question starts when the previous one is done
    engine = TransformersEngine(model, tok, batch_size=64, max_prompts=1)
    runs[0] = _run(engine, _requests(engine, 4), params)
    assert runs[0] == runs[1] == runs[3] == runs[64]
    assert compactions  # the batch-3 run shifted its cache at least once
    lengths = {len(c.token_ids) for _, comps in runs[1] for c in comps}
    assert len(lengths) > 1  # sequences of different lengths shared the batch


def test_full_width_attention_gives_the_same_samples(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the whole generated buffer (the columns outside each row's own masked) samples
    what reading the rows' window does; at batch 3 the rows start at different columns and
    the cache is compacted, so both kinds of step and the columns after `cur` are exercised."""
    model, tok = tiny
    widths: list[tuple[int, int]] = []
    update = SlotCache.update
    monkeypatch.setattr(
        SlotCache,
        "update",
        lambda self, *a, **k: (widths.append((self.lo, self.hi)), update(self, *a, **k))[1],
    )
    params = DecodeParams(temperature=1.0, top_p=1.0, max_new_tokens=60, stop_at_final_answer=False)
    runs = {}
    for full in (False, True):
        engine = TransformersEngine(model, tok, batch_size=3, full_width=full)
        assert engine.full_width is full
        widths.clear()
        runs[full] = _run(engine, _requests(engine, 4), params)
        capacity = 60 + 16
        whole = sum(1 for w in widths if w == (0, capacity))
        if full:
            assert 0 < whole < len(widths)  # full once a third is used, the window before that
        else:
            assert whole == 0
    assert runs[True] == runs[False]


def test_full_width_is_the_default_for_bfloat16_models_on_cpu(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    assert TransformersEngine(model, tok).full_width is False  # float32: MKL reads windows
    low = copy.deepcopy(model).to(torch.bfloat16)
    assert TransformersEngine(low, tok).full_width is True


@pytest.mark.skipif(
    not _can_pack(), reason="this CPU or torch has no oneDNN bfloat16 linear packing"
)
def test_packed_weights_sample_what_plain_weights_do(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bfloat16 model on packed weights: the products equal F.linear's, the samples equal
    those of the plain weights, and after `generate` the model is the caller's again."""
    model, tok = tiny
    low = copy.deepcopy(model).to(torch.bfloat16)
    linear = low.model.layers[0].mlp.up_proj
    x = torch.randn(5, 7, linear.in_features).to(torch.bfloat16)
    packed = _pack_linears(low, 8)
    assert len(packed) == 7 * len(low.model.layers)  # q, k, v, o, gate, up, down
    torch.testing.assert_close(
        _linear_packed(packed[linear], None, x), torch.nn.functional.linear(x, linear.weight)
    )
    params = DecodeParams(temperature=1.0, top_p=1.0, max_new_tokens=30, stop_at_final_answer=False)
    calls = []
    monkeypatch.setattr(
        transformers_engine,
        "_linear_packed",
        lambda *a: (calls.append(1), _linear_packed(*a))[1],
    )
    runs = {}
    for pack in (False, True):
        engine = TransformersEngine(low, tok, batch_size=3, pack_weights=pack)
        calls.clear()
        runs[pack] = _run(engine, _requests(engine, 2), params)
        assert bool(calls) is pack
        assert all("forward" not in m.__dict__ for m in low.modules())
    assert TransformersEngine(low, tok).pack_weights is True
    assert TransformersEngine(model, tok).pack_weights is False  # float32: MKL's own layout
    assert runs[True] == runs[False]


def test_no_packing_where_the_cpu_cannot(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU without oneDNN bfloat16 packing (AVX2 only), a bfloat16 model samples on its
    plain weights by default, and asking for packing is refused, naming why."""
    model, tok = tiny
    low = copy.deepcopy(model).to(torch.bfloat16)
    monkeypatch.setattr(transformers_engine, "_can_pack", lambda: False)
    engine = TransformersEngine(low, tok, batch_size=3)
    assert engine.pack_weights is False
    params = DecodeParams(temperature=1.0, top_p=1.0, max_new_tokens=8, stop_at_final_answer=False)
    out = _run(engine, _requests(engine, 2), params)
    assert [(key, [c.index for c in comps]) for key, comps in out] == [
        ("q0", [0, 1]),
        ("q1", [0, 1]),
        ("q2", [0, 1]),
    ]
    with pytest.raises(IrpoError, match="no oneDNN bfloat16 linear packing"):
        TransformersEngine(low, tok, pack_weights=True)


@pytest.mark.skipif(
    not _can_pack(), reason="this CPU or torch has no oneDNN bfloat16 linear packing"
)
def test_weights_are_not_packed_without_the_memory(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = tiny
    low = copy.deepcopy(model).to(torch.bfloat16)
    size = sum(m.weight.numel() * 2 for m in low.model.modules() if isinstance(m, torch.nn.Linear))
    monkeypatch.setattr(transformers_engine, "_available_memory", lambda: 4 * size)
    assert len(_pack_linears(low, 8)) == 7 * len(low.model.layers)  # a quarter: just fits
    monkeypatch.setattr(transformers_engine, "_available_memory", lambda: 4 * size - 1)
    assert _pack_linears(low, 8) == {}


def test_float_logits_reuses_one_buffer(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    engine = TransformersEngine(model, tok, batch_size=4)
    first = torch.tensor([[1.0, 2.5, -3.0]], dtype=torch.bfloat16)
    out = engine.float_logits(first)
    assert out.dtype == torch.float32 and out.tolist() == [[1.0, 2.5, -3.0]]
    again = engine.float_logits(torch.tensor([[4.0, 0.5, 1.0]] * 2, dtype=torch.bfloat16))
    assert again.data_ptr() == out.data_ptr() and again.tolist() == [[4.0, 0.5, 1.0]] * 2
    f32 = torch.ones(2, 3)
    assert engine.float_logits(f32) is f32


def test_same_seeds_same_samples_other_seeds_others(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    engine = TransformersEngine(model, tok, batch_size=8)
    params = DecodeParams(temperature=1.0, top_p=0.9, max_new_tokens=16, stop_at_final_answer=False)
    a = _run(engine, _requests(engine, 3, seed=0), params)
    assert a == _run(engine, _requests(engine, 3, seed=0), params)
    b = _run(engine, _requests(engine, 3, seed=1), params)
    assert [c.token_ids for _, cs in a for c in cs] != [c.token_ids for _, cs in b for c in cs]
    # samples of one question differ from each other (their seeds differ)
    assert len({tuple(c.token_ids) for c in a[0][1]}) == 3


def test_each_token_is_drawn_from_its_own_uniform(tiny: tuple[Any, Any]) -> None:
    """Replay: a plain forward over prompt + completion gives every step's logits; drawing with
    the sample's t-th uniform must give its t-th token (checks the slot cache and the draw)."""
    model, tok = tiny
    engine = TransformersEngine(model, tok, batch_size=5)
    params = DecodeParams(
        temperature=0.7, top_p=0.95, max_new_tokens=30, stop_at_final_answer=False
    )
    requests = _requests(engine, 2)
    checked = 0
    for req, comps in engine.generate(requests, params):
        for c in comps:
            ids = torch.tensor([list(req.prompt_ids) + c.token_ids])
            with torch.no_grad():
                logits = model(ids).logits[0, len(req.prompt_ids) - 1 : -1]
            u = uniform_stream(req.sample_seeds[c.index], params.max_new_tokens)[: len(c.token_ids)]
            assert draw_tokens(logits, u, 0.7, 0.95).tolist() == c.token_ids
            checked += len(c.token_ids)
    assert checked > 50


# --------------------------------------------------------------------------- where completions end


class ScriptedLM(torch.nn.Module):
    """Writes `script` after any prompt of `prompt_len` tokens: the logits at position p put all
    mass on script[p + 1 - prompt_len]. Its keys/values go through the engine's cache like a
    real model's; it lets the stop rules be tested on exact, known text."""

    def __init__(self, script: list[int], prompt_len: int, vocab: int, eos: Any) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.script = script
        self.prompt_len = prompt_len
        self.vocab = vocab
        self.config = SimpleNamespace(_attn_implementation="sdpa", model_type="scripted")
        self.generation_config = SimpleNamespace(eos_token_id=eos)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def set_attn_implementation(self, name: str) -> None:
        self.config._attn_implementation = name

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> SimpleNamespace:
        batch, q = input_ids.shape
        kv = torch.zeros(batch, 1, q, 2)
        cache.update(kv, kv, 0)
        step = (position_ids[:, -1] + 1 - self.prompt_len).clamp(max=len(self.script) - 1)
        logits = torch.full((batch, 1, self.vocab), -1e9)
        logits[torch.arange(batch), 0, torch.tensor(self.script)[step]] = 0.0
        return SimpleNamespace(logits=logits)


def _scripted(script: str, eos: Any = None, stop: bool = True, max_new: int = 64, min_new: int = 0):
    tok = build_char_tokenizer()
    ids = [tok.eos_token_id if ch == "$" else tok.convert_tokens_to_ids(ch) for ch in script]
    prompt = "Question: 1+1?"
    prompt_ids = tok(prompt)["input_ids"]
    model = ScriptedLM(ids, len(prompt_ids), len(tok), tok.eos_token_id if eos is None else eos)
    engine = TransformersEngine(model, tok, batch_size=4)
    params = DecodeParams(0.0, 1.0, max_new, stop_at_final_answer=stop, min_new_tokens=min_new)
    request = PromptRequest("q", tuple(prompt_ids), (1, 2))
    [(_, comps)] = list(engine.generate([request], params))
    assert comps[1] == Completion(1, *list(vars(comps[0]).values())[1:])
    return comps[0], tok


def _ids(tok: Any, text: str) -> list[int]:
    return [tok.convert_tokens_to_ids(ch) for ch in text]


def test_stop_right_after_the_final_answer_line() -> None:
    c, tok = _scripted("1+1=2\nFinal answer: 2\nQuestion: 2+2?$")
    assert c == Completion(
        0, _ids(tok, "1+1=2\nFinal answer: 2\n"), "1+1=2\nFinal answer: 2\n", "stop"
    )


def test_without_the_stop_generation_runs_to_eos() -> None:
    c, tok = _scripted("1+1=2\nFinal answer: 2\nQ$", stop=False)
    text = "1+1=2\nFinal answer: 2\nQ"
    assert c == Completion(0, [*_ids(tok, text), tok.eos_token_id], text, "eos")


def test_eos_before_any_answer_and_token_budget() -> None:
    c, tok = _scripted("1+1=2$more")
    assert c == Completion(0, [*_ids(tok, "1+1=2"), tok.eos_token_id], "1+1=2", "eos")
    c, tok = _scripted("1+1=2\nFinal answer: 2\n", max_new=5)
    assert c == Completion(0, _ids(tok, "1+1=2"), "1+1=2", "length")
    # the answer line ends exactly at the budget: the stop takes precedence
    c, tok = _scripted("Final answer: 2\nmore", max_new=16)
    assert c.finish_reason == "stop"
    assert len(c.token_ids) == 16


def test_eos_ids_of_the_generation_config() -> None:
    tok = build_char_tokenizer()
    bang = tok.convert_tokens_to_ids("!")
    c, _ = _scripted("Hi!there$", eos=[tok.eos_token_id, bang])
    assert c == Completion(0, [*_ids(tok, "Hi"), bang], "Hi", "eos")


def test_min_new_tokens_masks_eos() -> None:
    """EOS is masked before 6 tokens: at the EOS step every other logit is -1e9, so greedy picks
    id 0; the script then goes on by position."""
    c, tok = _scripted("ab$cdefg", max_new=6, min_new=6)
    assert c.token_ids == [*_ids(tok, "ab"), 0, *_ids(tok, "cde")]
    assert c.finish_reason == "length"
