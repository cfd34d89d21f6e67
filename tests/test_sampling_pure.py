"""Pure parts of sampling: where completions stop, how tokens are drawn, seeds, shards, and
the conversion of vLLM outputs into records."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from irpo.errors import IrpoError
from irpo.records import Problem
from irpo.sampling.draw import draw_tokens, uniform_stream
from irpo.sampling.engine import DecodeParams
from irpo.sampling.seeding import sample_seeds, sequence_seed
from irpo.sampling.shards import Shard, select_shard, shard_of
from irpo.sampling.stopping import cut_at_final_answer, final_answer_end, newline_token_ids
from irpo.sampling.vllm import to_completion

# --------------------------------------------------------------------------- final-answer stop


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("3 + 4 = 7.\nFinal answer: 7\n", 27),  # 11 + 15 characters, then the newline
        ("3 + 4 = 7.\nFinal answer: 7", None),  # the line is not finished yet
        ("Final answer: 7\nQuestion: next one\n", 16),  # stop before the run-on
        ("final ANSWER:   -1,080\n", 23),  # any case, any spacing
        ("**Final answer:** 42\n", 21),  # markdown bold around the label
        ("**Final answer:**\n\n42\nmore\n", 22),  # answer on the next non-blank line
        ("**Final answer:**\n", None),  # label alone: the answer is still to come
        ("The final answer is 7\n", None),  # not the requested format
        ("Step 1\nStep 2\n", None),
        ("", None),
    ],
)
def test_final_answer_end(text: str, end: int | None) -> None:
    assert final_answer_end(text) == end


def _char_decode(ids: list[int] | tuple[int, ...]) -> str:
    return "".join(chr(i) for i in ids)


def test_cut_at_final_answer_keeps_the_token_holding_the_newline() -> None:
    # Tokens are characters, except 1000 which decodes to "\nQ" (a newline inside a token).
    def decode(ids: object) -> str:
        return "".join("\nQ" if i == 1000 else chr(i) for i in ids)  # type: ignore[attr-defined]

    ids = [ord(c) for c in "Final answer: 5"] + [1000] + [ord(c) for c in "uestion"]
    newline_ids = frozenset({1000, ord("\n")})
    assert cut_at_final_answer(ids, decode, newline_ids) == 16  # 15 characters + the "\nQ" token
    assert decode(ids[:16]) == "Final answer: 5\nQ"
    assert cut_at_final_answer(ids, decode, newline_ids, min_tokens=17) is None
    assert cut_at_final_answer([ord(c) for c in "no answer\n"], decode, newline_ids) is None


def test_newline_token_ids_of_the_char_tokenizer() -> None:
    from irpo.models import build_char_tokenizer

    tok = build_char_tokenizer()
    assert newline_token_ids(tok) == frozenset({tok.convert_tokens_to_ids("\n")})


# --------------------------------------------------------------------------- drawing tokens


def test_draw_greedy_takes_the_first_maximum() -> None:
    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    assert draw_tokens(logits, torch.tensor([0.9, 0.9], dtype=torch.float64), 0.0).tolist() == [
        1,
        0,
    ]


def test_draw_inverse_cdf() -> None:
    """probs (0.1, 0.2, 0.7): cdf (0.1, 0.3, 1.0); u picks the first token whose cdf exceeds u."""
    logits = torch.tensor([[math.log(0.1), math.log(0.2), math.log(0.7)]]).repeat(4, 1)
    u = torch.tensor([0.05, 0.15, 0.31, 0.999], dtype=torch.float64)
    assert draw_tokens(logits, u, 1.0).tolist() == [0, 1, 2, 2]


def test_draw_temperature() -> None:
    """logits (0, ln 3) at T=2: probs proportional to (1, sqrt 3), so p0 = 1 / (1 + 1.732) = 0.366."""
    logits = torch.tensor([[0.0, math.log(3.0)]]).repeat(2, 1)
    u = torch.tensor([0.36, 0.37], dtype=torch.float64)
    assert draw_tokens(logits, u, 2.0).tolist() == [0, 1]
    assert draw_tokens(logits, u, 1.0).tolist() == [1, 1]  # at T=1, p0 = 0.25


def test_draw_top_p() -> None:
    """probs (0.1, 0.2, 0.7). top_p 0.7 keeps {2}; top_p 0.8 keeps {2, 1}, renormalised to
    (0.7, 0.2) / 0.9 in that order, so u < 0.7 / 0.9 = 0.778 picks 2, above picks 1."""
    logits = torch.tensor([[math.log(0.1), math.log(0.2), math.log(0.7)]]).repeat(3, 1)
    u = torch.tensor([0.0, 0.77, 0.79], dtype=torch.float64)
    assert draw_tokens(logits, u, 1.0, top_p=0.7).tolist() == [2, 2, 2]
    assert draw_tokens(logits, u, 1.0, top_p=0.8).tolist() == [2, 2, 1]
    assert draw_tokens(logits, u, 1.0, top_p=1.0).tolist() == [0, 2, 2]


def test_draw_never_picks_a_zero_probability_token() -> None:
    logits = torch.tensor([[-float("inf"), 0.0, -float("inf"), 0.0]]).repeat(3, 1)
    u = torch.tensor([0.0, 0.5, 0.99999], dtype=torch.float64)
    assert draw_tokens(logits, u, 1.0).tolist() == [1, 3, 3]


def test_draw_from_bfloat16_logits_leaves_them_unchanged() -> None:
    """bfloat16 logits (a bf16 model's LM head) are drawn from in float32, on a copy: even with
    `overwrite`, the caller's tensor keeps its values and the draw is the float32 one."""
    logits = torch.tensor([[math.log(0.1), math.log(0.2), math.log(0.7)]]).repeat(4, 1)
    low = logits.to(torch.bfloat16)
    before = low.clone()
    u = torch.tensor([0.05, 0.15, 0.31, 0.999], dtype=torch.float64)
    assert draw_tokens(low, u, 1.0, overwrite=True).tolist() == [0, 1, 2, 2]
    assert torch.equal(low, before)


def test_uniform_stream_depends_on_the_seed_only() -> None:
    a = uniform_stream(123, 5)
    assert a.dtype == torch.float64
    assert torch.equal(a, uniform_stream(123, 5))
    assert torch.equal(uniform_stream(123, 3), a[:3])  # a prefix of the same stream
    assert not torch.equal(a, uniform_stream(124, 5))
    expected = torch.rand(5, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    assert torch.equal(a, expected)


# --------------------------------------------------------------------------- seeds and shards


def test_sequence_seed_is_a_blake2b_of_the_parts() -> None:
    digest = hashlib.blake2b(b"0\x1f'sample'\x1f1\x1f'q7'\x1f3", digest_size=8).digest()
    assert sequence_seed(0, "sample", 1, "q7", 3) == int.from_bytes(digest, "little") >> 1
    assert sample_seeds(0, "sample", 1, "q7", 4)[3] == sequence_seed(0, "sample", 1, "q7", 3)
    seeds = sample_seeds(0, "sample", 1, "q7", 30)
    assert len(set(seeds)) == 30
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seeds(0, "eval", 1, "q7", 1) != sample_seeds(0, "sample", 1, "q7", 1)


def test_shard_parse_and_errors() -> None:
    assert Shard.parse("1/4") == Shard(1, 4)
    assert str(Shard(1, 4)) == "1/4"
    for bad in ("4/4", "-1/4", "1", "a/b", "0/0"):
        with pytest.raises(IrpoError, match="I/N"):
            Shard.parse(bad)


def test_shards_partition_the_problems_by_id() -> None:
    problems = [Problem(id=f"q{i}", question="?", answer="1") for i in range(40)]
    parts = [select_shard(problems, Shard(i, 3)) for i in range(3)]
    ids = sorted(p.id for part in parts for p in part)
    assert ids == sorted(p.id for p in problems)
    for i, part in enumerate(parts):
        assert all(shard_of(p.id, 3) == i for p in part)
        assert part == [p for p in problems if p in part]  # original order kept
    digest = hashlib.blake2b(b"q0", digest_size=8).digest()
    assert shard_of("q0", 3) == int.from_bytes(digest, "little") % 3
    # membership depends on the id alone, not on the other problems
    assert select_shard(problems[::-1], Shard(0, 3)) == parts[0][::-1]


# --------------------------------------------------------------------------- vLLM outputs


EOS = 3
PARAMS = DecodeParams(temperature=0.8, top_p=1.0, max_new_tokens=40, stop_at_final_answer=True)
NL = frozenset({ord("\n")})


def _vllm(
    ids: list[int], finish: str, stop: int | str | None = None, params: DecodeParams = PARAMS
):
    def decode(t: object) -> str:
        return "".join("<eos>" if i == EOS else chr(i) for i in t)  # type: ignore[attr-defined]

    return to_completion(
        0, ids, finish, stop, params, eos_ids=frozenset({EOS}), newline_ids=NL, decode=decode
    )


def _ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_vllm_output_ending_on_eos() -> None:
    c = _vllm([*_ids("7"), EOS], "stop")
    assert (c.token_ids, c.text, c.finish_reason) == ([*_ids("7"), EOS], "7", "eos")
    # a stop token missing from token_ids is put back, as the transformers engine records it
    c = _vllm(_ids("7"), "stop", stop=EOS)
    assert (c.token_ids, c.text, c.finish_reason) == ([*_ids("7"), EOS], "7", "eos")


def test_vllm_output_cut_after_the_final_answer_line() -> None:
    c = _vllm([*_ids("x\nFinal answer: 7\nQuestion"), EOS], "stop")
    assert (c.token_ids, c.text, c.finish_reason) == (
        _ids("x\nFinal answer: 7\n"),
        "x\nFinal answer: 7\n",
        "stop",
    )
    c = _vllm(_ids("Final answer: 7\n"), "length")  # ended exactly on the answer line
    assert c.finish_reason == "stop"
    c = _vllm(_ids("Final answer: 7"), "length")
    assert (c.token_ids, c.finish_reason) == (_ids("Final answer: 7"), "length")
    no_stop = DecodeParams(0.8, 1.0, 40, stop_at_final_answer=False)
    c = _vllm([*_ids("Final answer: 7\nQ"), EOS], "stop", params=no_stop)
    assert (c.text, c.finish_reason) == ("Final answer: 7\nQ", "eos")


def test_draw_across_vocabulary_blocks() -> None:
    """A 600-token vocabulary (not a multiple of the 256-token blocks) with mass on tokens 5,
    300 and 599 only: probs (0.2, 0.3, 0.5), cdf (0.2, 0.5, 1.0)."""
    logits = torch.full((4, 600), -float("inf"))
    logits[:, [5, 300, 599]] = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    u = torch.tensor([0.1, 0.3, 0.6, 0.99999], dtype=torch.float64)
    assert draw_tokens(logits, u, 1.0).tolist() == [5, 300, 599, 599]


def test_attention_the_slot_cache_cannot_hold_is_refused() -> None:
    from types import SimpleNamespace

    from irpo.sampling.slots import check_supported

    check_supported(SimpleNamespace(model_type="llama"), 4096)
    check_supported(SimpleNamespace(sliding_window=4096, use_sliding_window=False), 8192)
    check_supported(SimpleNamespace(sliding_window=4096), 4096)  # the window covers everything
    for config in (
        SimpleNamespace(model_type="gemma3", layer_types=["sliding_attention", "full_attention"]),
        SimpleNamespace(model_type="mistral", sliding_window=128),
    ):
        with pytest.raises(IrpoError, match=r"use sampling\.engine=vllm"):
            check_supported(config, 300)
