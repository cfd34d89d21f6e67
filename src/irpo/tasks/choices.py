"""Multiple-choice answers: which option label a final-answer span names.

Accepted, at the start of the span after "Final answer:" (see `irpo.tasks.answers`):
"C", "(C)", "C)", "[C]", "C. text", "C: text", "C (text)", "C text" (its own option text),
"**C**", "Option C", "Answer: (C)", and digit labels ("2", "(2)") when the options are labelled
with digits. A label must be one of the problem's labels. A bare letter followed by other words
is not a label ("A fold in the rock..." starts with an article), and a lower-case letter counts
only in brackets ("(c)") or alone. When the label and a quoted option text disagree ("(C) wet palms" where C is another
text) the label wins: the label is what the prompt asks for.

Fall-back inside the span: a reply that repeats one option's text exactly (case and a trailing
period ignored) and matches no other option is mapped to that option's label.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_LEADING_WORDS = re.compile(
    r"^(?:the\s+)?(?:correct\s+)?(?:option|choice|answer)\s*(?:is\b)?\s*:?\s*", re.IGNORECASE
)
_LABEL = re.compile(r"^([\(\[]\s*)?([A-Za-z]|\d{1,2})\s*([\)\]])?")


def _normalise_text(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def _label_at_start(s: str, choices: Sequence[tuple[str, str]]) -> str | None:
    match = _LABEL.match(s)
    if match is None:
        return None
    opened, label, closed = match.group(1), match.group(2), match.group(3)
    if bool(opened) and not closed:
        return None
    rest = s[match.end() :]
    texts = dict(choices)
    if (
        label not in texts
        and label.islower()
        and label.upper() in texts
        and (opened or closed or not rest.strip(" ."))
    ):
        label = label.upper()
    if label not in texts:
        return None
    # "A fold in the rock..." starts with the article, not the label: after a bare label only
    # the end, punctuation, a dash, a bracket or the option's own text may follow.
    if closed or not rest or rest[0] in ".,:;!-–":
        return label
    tail = rest.lstrip()
    if tail[:1] in "(-–" or _normalise_text(tail).startswith(_normalise_text(texts[label])):
        return label
    return None


def choice_label(span: str, choices: Sequence[tuple[str, str]]) -> str | None:
    """The label of the option `span` names, or None (rules in the module docstring)."""
    s = span.strip().strip("*_`").strip()
    s = _LEADING_WORDS.sub("", s).strip().strip("*_`").strip()
    label = _label_at_start(s, choices)
    if label is not None:
        return label
    wanted = _normalise_text(s)
    named = [label for label, text in choices if _normalise_text(text) == wanted]
    return named[0] if len(named) == 1 else None
