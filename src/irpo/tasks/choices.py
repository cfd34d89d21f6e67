"""Multiple-choice answers: which option label an answer span names.

Accepted, at the start of the span (after "Final answer:" or a fall-back of
`irpo.tasks.answers`): "C", "(C)", "C)", "[C]", '"C"', "C. text", "C: text", "C (text)",
"C text" (its own option text), "**C**", "Option C", "Answer: (C)", "The correct answer is D)",
"\\text{B. 3 metres}", and digit labels ("2", "(2)") when the options are labelled with digits.
A label must be one of the problem's labels. A bare letter followed by other words is not a label
("A fold in the rock..." starts with an article), and a lower-case letter counts only in brackets
("(c)") or alone. When the label and a quoted option text disagree ("(C) wet palms" where C is
another text) the label wins: the label is what the prompt asks for.

Fall-backs inside the span: a reply that is one option's text (after normalisation: case,
spacing, quotes, markdown and a final period ignored) and matches no other option is mapped to
that option's label; a reply that ends with a label in brackets ('"the type of environment"
(D)') names that label unless its text is another option's. Texts are compared exactly after
that normalisation, never by similarity.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from irpo.tasks.answers import unwrap_answer

_LEADING_WORDS = re.compile(
    r"^(?:(?:so|thus|therefore|hence)\b,?\s*)?(?:the\s+)?(?:(?:correct|right|best|final)\s+)?"
    r"(?:option|choice|answer)\s*(?:is\b)?"
    r"(?:\s+(?:for\s+sure|therefore|thus|clearly|definitely|indeed)\b)?\s*[:：]?\s*",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^([\(\[]\s*)?([A-Za-z]|\d{1,2})\s*([\)\]])?")
_TEXT_WRAPPER = re.compile(r"^\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{(.*)\}$", re.DOTALL)
_TRAILING_LABEL = re.compile(r"^(.+?)\s*\(\s*([A-Z]|\d{1,2})\s*\)\s*[.!]?$", re.DOTALL)
_QUOTES = "\"'“”‘’«»"
_STRIP = " \t\n*_`" + _QUOTES


def _normalise_text(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'")
    text = text.strip().strip(_STRIP).strip().rstrip(".!").strip().strip(_STRIP)
    return " ".join(text.lower().split())


def _clean(span: str) -> str:
    """The span without markdown, quotes, math delimiters, `\\text{}` and leading words."""
    s = span
    for _ in range(3):
        s = unwrap_answer(s.strip().strip(_STRIP))
        inner = _TEXT_WRAPPER.match(s.strip())
        if inner is not None:
            s = inner.group(1)
        s = _LEADING_WORDS.sub("", s.strip().strip(_STRIP)).strip()
    return s


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
    # the end, punctuation, a dash, a bracket, a closing quote or the option's own text may
    # follow.
    if closed or not rest or rest[0] in ".,:;!-–" + _QUOTES:
        return label
    tail = rest.lstrip()
    if tail[:1] in "(-–" or _normalise_text(tail).startswith(_normalise_text(texts[label])):
        return label
    return None


def choice_label(span: str, choices: Sequence[tuple[str, str]]) -> str | None:
    """The label of the option `span` names, or None (rules in the module docstring)."""
    s = _clean(span)
    label = _label_at_start(s, choices)
    if label is not None:
        return label
    named = _named_by_text(s, choices)
    if named is not None:
        return named
    trailing = _TRAILING_LABEL.match(s)
    if trailing is not None and trailing.group(2) in dict(choices):
        # '"the type of environment ..." (D)': the text, when it names an option, must agree
        text_names = _named_by_text(trailing.group(1), choices)
        if text_names in (None, trailing.group(2)):
            return trailing.group(2)
    return None


def _named_by_text(s: str, choices: Sequence[tuple[str, str]]) -> str | None:
    wanted = _normalise_text(s)
    if not wanted:
        return None
    named = [label for label, text in choices if _normalise_text(text) == wanted]
    return named[0] if len(named) == 1 else None
