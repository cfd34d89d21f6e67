"""Where a completion ends: EOS, or right after the line that carries "Final answer: ...".

The paper asks the model to conclude with "Final answer: ..." (IRPO section 2, prompts in
Appendix). Text generated after that line is at best wasted compute and at worst a run-on
("Final answer: 18\\nQuestion: ...") that changes the verdict, so sampling can stop at the newline
that ends the answer line. These functions are pure: engines call them on decoded text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_FINAL = re.compile(r"final\s+answer\s*:", re.IGNORECASE)
_EMPHASIS = "*_`"


def final_answer_end(text: str) -> int | None:
    """Offset just past the newline that ends the first final-answer line of `text`, or None.

    A final-answer line contains "Final answer:" (any case) followed by an answer. When the
    answer is not on that line ("**Final answer:**" and a newline), the answer line is the next
    non-blank line. Only complete lines (ended by a newline) count: the line still being
    generated may not be finished yet.
    """
    waiting_for_answer = False
    start = 0
    while True:
        newline = text.find("\n", start)
        if newline < 0:
            return None
        line = text[start:newline]
        if waiting_for_answer:
            if line.strip(" \t\r" + _EMPHASIS):
                return newline + 1
        else:
            match = _FINAL.search(line)
            if match is not None:
                if line[match.end() :].strip(" \t\r" + _EMPHASIS):
                    return newline + 1
                waiting_for_answer = True
        start = newline + 1


def cut_at_final_answer(
    token_ids: Sequence[int],
    decode: Callable[[Sequence[int]], str],
    newline_ids: frozenset[int],
    min_tokens: int = 0,
) -> int | None:
    """Number of tokens to keep so that the completion ends with its final-answer line, or None.

    Only tokens that contain a newline can end that line, so text is decoded only at those.
    The token holding the newline is kept whole (token ids and text must agree), so the text
    can end with what that token carries after the newline. Cuts shorter than `min_tokens` are
    not taken (as an engine that may not stop before that many tokens would not).
    """
    for i, tok in enumerate(token_ids):
        if i + 1 < min_tokens or tok not in newline_ids:
            continue
        if final_answer_end(decode(token_ids[: i + 1])) is not None:
            return i + 1
    return None


def newline_token_ids(tokenizer: object) -> frozenset[int]:
    """Ids of the vocabulary entries whose decoded text contains a newline."""
    vocab_size = len(tokenizer)  # type: ignore[arg-type]
    texts = tokenizer.batch_decode([[i] for i in range(vocab_size)])  # type: ignore[attr-defined]
    return frozenset(i for i, t in enumerate(texts) if "\n" in t)
