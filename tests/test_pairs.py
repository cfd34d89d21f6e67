"""Exact pairs for hand-made sample sets: the wrap-around zip, gold winners, order, dedupe, caps."""

from __future__ import annotations

from typing import Any

import pytest

from irpo.config import PairsConfig
from irpo.errors import IrpoError
from irpo.pairs import GOLD_INDEX, PairStats, make_pairs, preference_rows
from irpo.records import Pair, Sample


def sample(pid: str, index: int, text: str, correct: bool, parsed: bool = True) -> Sample:
    """A verified sample with one token per character of `text`."""
    answer = ("right" if correct else "wrong") if parsed else None
    return Sample(pid, index, text, [ord(c) for c in text], "eos", answer, correct)


def prompts(*pids: str) -> dict[str, tuple[str, list[int]]]:
    return {pid: (f"Q {pid}?", [1, 2, 3]) for pid in pids}  # 3 prompt tokens each


GOLD = {"q": ("gold solution", [7, 7, 2])}


def indices(pairs: list[Pair]) -> list[tuple[int, int]]:
    return [(p.chosen_index, p.rejected_index) for p in pairs]


def run(samples: list[Sample], seed: int = 0, **options: Any) -> tuple[list[Pair], PairStats]:
    pids = sorted({s.problem_id for s in samples})
    return make_pairs(samples, prompts(*pids), PairsConfig(**options), seed=seed, gold=GOLD)


def w_and_l(winners: list[int], losers: list[int], pid: str = "q") -> list[Sample]:
    """Samples with distinct texts: winners correct, losers wrong, at the given indices."""
    out = [sample(pid, i, f"win {i}", True) for i in winners]
    out += [sample(pid, i, f"lose {i}", False) for i in losers]
    return out


# --------------------------------------------------------------------------- the zip


def test_zip_wraps_around_and_stops_after_one_period() -> None:
    # |W| = 2, |L| = 3: period lcm = 6, every (winner, loser) combination once, then it would repeat.
    pairs, stats = run(w_and_l([0, 2], [1, 3, 4]), pairs_per_question=10)
    assert indices(pairs) == [(0, 1), (2, 3), (0, 4), (2, 1), (0, 3), (2, 4)]
    assert stats.pairs == 6 and stats.dropped_duplicates == 0


def test_zip_period_shorter_than_product() -> None:
    # |W| = 2, |L| = 4: lcm = 4, so (w0, l1) never occurs; the zip restarts both lists together.
    pairs, _ = run(w_and_l([0, 1], [2, 3, 4, 5]), pairs_per_question=10)
    assert indices(pairs) == [(0, 2), (1, 3), (0, 4), (1, 5)]


def test_k_smaller_than_lists_takes_the_first_k() -> None:
    pairs, _ = run(w_and_l([0, 2], [1, 3, 4]), pairs_per_question=4)
    assert indices(pairs) == [(0, 1), (2, 3), (0, 4), (2, 1)]


def test_k_larger_than_one_list_restarts_it() -> None:
    # The paper's case: one winner against many losers, the winner list restarts each step.
    pairs, _ = run(w_and_l([5], [0, 1, 2, 3]), pairs_per_question=3)
    assert indices(pairs) == [(5, 0), (5, 1), (5, 2)]


def test_pair_fields_carry_prompt_and_response_tokens() -> None:
    pairs, _ = run(w_and_l([0], [1]), pairs_per_question=1)
    assert pairs == [
        Pair(
            problem_id="q",
            prompt="Q q?",
            prompt_ids=[1, 2, 3],
            chosen="win 0",
            chosen_ids=[ord(c) for c in "win 0"],
            rejected="lose 1",
            rejected_ids=[ord(c) for c in "lose 1"],
            chosen_index=0,
            rejected_index=1,
        )
    ]


# --------------------------------------------------------------------------- dropped questions, gold


def test_all_correct_question_is_dropped() -> None:
    pairs, stats = run(w_and_l([0, 1], []))
    assert pairs == []
    assert (stats.questions, stats.all_correct, stats.questions_paired) == (1, 1, 0)


def test_all_wrong_question_dropped_without_gold() -> None:
    pairs, stats = run(w_and_l([], [0, 1]), gold_as_winner="never")
    assert pairs == [] and stats.gold_questions == 0


def test_all_wrong_question_gets_gold_winner_by_default() -> None:
    pairs, stats = run(w_and_l([], [0, 1]), pairs_per_question=5)
    assert indices(pairs) == [(GOLD_INDEX, 0), (GOLD_INDEX, 1)]
    assert pairs[0].chosen == "gold solution" and pairs[0].chosen_ids == [7, 7, 2]
    assert (stats.gold_questions, stats.gold_winners, stats.all_wrong) == (1, 2, 1)


def test_if_no_correct_leaves_mixed_questions_on_policy() -> None:
    pairs, stats = run(w_and_l([0], [1, 2]), gold_as_winner="if_no_correct")
    assert indices(pairs) == [(0, 1), (0, 2)]
    assert stats.gold_winners == 0


def test_gold_always_goes_first_among_winners() -> None:
    pairs, stats = run(w_and_l([0], [1, 2, 3]), gold_as_winner="always", pairs_per_question=3)
    # W = [gold, s0], L = [s1, s2, s3], lcm = 6, K = 3
    assert indices(pairs) == [(GOLD_INDEX, 1), (0, 2), (GOLD_INDEX, 3)]
    assert (stats.gold_questions, stats.gold_winners) == (1, 2)


def test_question_without_gold_is_dropped_when_all_wrong() -> None:
    # An ARC-like question: no entry in `gold`, so if_no_correct has nothing to add.
    pairs, stats = run(w_and_l([], [0, 1], pid="arc"))
    assert pairs == [] and stats.all_wrong == 1 and stats.gold_questions == 0


def test_all_correct_question_is_dropped_even_with_gold_always() -> None:
    pairs, _ = run(w_and_l([0, 1], []), gold_as_winner="always")
    assert pairs == []


# --------------------------------------------------------------------------- order


def test_order_shortest_sorts_by_tokens_then_index() -> None:
    samples = [
        sample("q", 0, "long winner", True),
        sample("q", 1, "wrong, and long", False),
        sample("q", 2, "win B", True),
        sample("q", 3, "no", False),
        sample("q", 4, "win A", True),
    ]
    pairs, _ = run(samples, order="shortest", pairs_per_question=3)
    # W by length: [2 (5 tokens), 4 (5, later index), 0 (11)]; L: [3 (2), 1 (15)]
    assert indices(pairs) == [(2, 3), (4, 1), (0, 3)]
    by_index, _ = run(samples, order="sample", pairs_per_question=3)
    assert indices(by_index) == [(0, 1), (2, 3), (4, 1)]


def test_order_random_is_seeded_and_per_question() -> None:
    samples = w_and_l([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    first, _ = run(samples, seed=0, order="random", pairs_per_question=5)
    again, _ = run(samples, seed=0, order="random", pairs_per_question=5)
    assert indices(first) == indices(again)
    assert indices(first) == [(4, 9), (2, 8), (1, 6), (0, 7), (3, 5)]  # pinned: Python's seeded RNG
    assert sorted(c for c, _ in indices(first)) == [0, 1, 2, 3, 4]
    other, _ = run(samples, seed=1, order="random", pairs_per_question=5)
    assert indices(other) != indices(first)
    # Another question in the batch does not change this question's shuffle.
    with_other, _ = run(samples + w_and_l([0], [1], pid="r"), seed=0, order="random")
    assert indices([p for p in with_other if p.problem_id == "q"])[:5] == indices(first)


# --------------------------------------------------------------------------- dedupe, length, cap


def test_dedupe_skips_repeated_texts_and_keeps_walking() -> None:
    samples = [
        sample("q", 0, "a", True),
        sample("q", 1, "b", True),
        sample("q", 2, "x", False),
        sample("q", 3, "x", False),
        sample("q", 4, "y", False),
    ]
    # Zip over lcm(2, 3) = 6: (0,2) (1,3) (0,4) (1,2)=dup of (1,3) (0,3)=dup of (0,2) (1,4)
    pairs, stats = run(samples, pairs_per_question=4)
    assert indices(pairs) == [(0, 2), (1, 3), (0, 4), (1, 4)]
    assert stats.dropped_duplicates == 2
    kept_all, stats = run(samples, pairs_per_question=4, dedupe=False)
    assert indices(kept_all) == [(0, 2), (1, 3), (0, 4), (1, 2)]
    assert stats.dropped_duplicates == 0


def test_dedupe_counts_within_a_question_only() -> None:
    samples = w_and_l([0], [1]) + w_and_l([0], [1], pid="r")  # same texts, two questions
    pairs, stats = run(samples)
    assert len(pairs) == 2 and stats.dropped_duplicates == 0


def test_too_long_pairs_are_skipped() -> None:
    samples = [
        sample("q", 0, "ok", True),  # 2 tokens
        sample("q", 1, "short", False),  # 5 tokens: 3 + 5 = 8 fits
        sample("q", 2, "too long", False),  # 8 tokens: 3 + 8 = 11 > 8
        sample("q", 3, "fits", False),
    ]
    pairs, stats = run(samples, max_length=8, pairs_per_question=10)
    assert indices(pairs) == [(0, 1), (0, 3)]
    assert stats.dropped_too_long == 1
    all_pairs, _ = run(samples, max_length=11)
    assert indices(all_pairs) == [(0, 1), (0, 2), (0, 3)]


def test_cap_keeps_a_seeded_subset_in_order() -> None:
    samples = w_and_l([0, 2], [1, 3, 4])  # 6 pairs uncapped
    capped, stats = run(samples, seed=0, max_pairs=3)
    again, _ = run(samples, seed=0, max_pairs=3)
    other, _ = run(samples, seed=3, max_pairs=3)
    full = indices(run(samples)[0])
    assert indices(capped) == indices(again)
    assert indices(capped) == [(0, 1), (2, 1), (2, 4)]  # pinned: Python's seeded RNG
    assert indices(capped) == [p for p in full if p in indices(capped)]  # original order
    assert indices(other) != indices(capped)
    assert (stats.pairs, stats.dropped_cap) == (3, 3)
    _, stats = run(samples, max_pairs=6)
    assert stats.dropped_cap == 0


# --------------------------------------------------------------------------- stats, errors, rows


def test_stats_count_question_kinds_and_tokens() -> None:
    samples = [
        *w_and_l([0], [1, 2], pid="mixed"),
        sample("mixed", 3, "garbled", False, parsed=False),
        *w_and_l([0, 1], [], pid="easy"),
        sample("junk", 0, "???", False, parsed=False),
        sample("junk", 1, "!!", False, parsed=False),
        sample("hard", 0, "nope", False, parsed=False),
        sample("hard", 1, "wrong", False),
    ]
    pairs, stats = run(samples, gold_as_winner="never")
    assert indices(pairs) == [(0, 1), (0, 2), (0, 3)]
    assert stats.to_dict() == {
        "questions": 4,
        "all_correct": 1,
        "all_wrong": 2,
        "mixed": 1,
        "unparseable": 1,
        "unparseable_samples": 4,
        "questions_paired": 1,
        "gold_questions": 0,
        "gold_winners": 0,
        "pairs": 3,
        "dropped_duplicates": 0,
        "dropped_too_long": 0,
        "dropped_cap": 0,
        "mean_chosen_tokens": 5.0,  # "win 0"
        "mean_rejected_tokens": (6 + 6 + 7) / 3,  # "lose 1", "lose 2", "garbled"
    }


def test_unverified_sample_is_an_error() -> None:
    raw = Sample("q", 4, "text", [1], "eos")
    with pytest.raises(IrpoError, match=r"sample 4 of problem 'q' is not verified"):
        make_pairs([raw], prompts("q"), PairsConfig(), seed=0)


def test_missing_prompt_is_an_error() -> None:
    with pytest.raises(IrpoError, match=r"problem 'z': no prompt"):
        make_pairs(w_and_l([0], [1], pid="z"), prompts("q"), PairsConfig(), seed=0)


def test_preference_rows() -> None:
    pairs, _ = run(w_and_l([0], [1, 2]))
    assert preference_rows(pairs) == [
        {"prompt": "Q q?", "chosen": "win 0", "rejected": "lose 1"},
        {"prompt": "Q q?", "chosen": "win 0", "rejected": "lose 2"},
    ]
