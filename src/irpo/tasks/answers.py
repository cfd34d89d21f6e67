"""Final-answer extraction and number normalisation, shared by every task.

IRPO rewards a sample when "the answer after 'Final answer:'" matches the gold answer (paper,
Sec. 2, step 2). A false negative here labels a correct sample as a *loser*, a false positive
labels a wrong one as a *winner*, so the rules are explicit and conservative.

Two answer modes (`ANSWER_MODES`, the task option `answer_mode`):

- `strict`: the paper's contract only. The answer follows the LAST "Final answer:" marker
  (case-insensitive; also "**Final answer:**", "Final Answer**:", "final answer is"); only the
  first non-empty line after it is used, so run-on text on later lines never counts.
- `flexible` (default): what a careful human grader reads. The marker first, exactly as in
  `strict`; a marker followed by a non-empty answer decides, whether or not that answer parses.
  Without a marker (or with a marker followed by nothing), the fall-backs in this order, on the
  text before any run-on "Question:" / "Problem:" line the model began by itself, each the last
  of its kind; the first one whose answer parses wins:
  `hashes` ("#### 42", GSM8K style), `answer_line` (a last line "ANSWER: X" / "Answer: X"),
  `boxed` (the last `\\boxed{}`, or the group of boxes that ends the text), `answer_is`
  ("the answer is X", "the correct answer is", "the best answer is", "The answer: X", "the
  answer is for sure X"), `last_line` (a last line that is nothing but an answer: "(C)", "42").

Inside a span, markdown emphasis, a surrounding `$...$` / `\\(...\\)` / `\\[...\\]` and a
`\\boxed{...}` / `\\fbox{...}` wrapper are removed (`unwrap_answer`); math segments joined by
words ("$-3$ or $2$", "$x=-3$ and $x=2$") are kept together as "-3, 2".

Numbers (`parse_number`): thousands separators ("1,080", "12 500"), a leading "$", a trailing "%"
or unit word, a unicode minus, "3.50" == "3.5", "5.0" == "5", fractions ("3/4", `\\frac{3}{4}`),
mixed numbers ("2 1/4"), scale words ("700 million", "2.5 thousand"). An answer span whose
number is ambiguous (several numbers and no "=", or a bare expression such as "18 * 2") is
unparsed rather than guessed.

Nothing here evaluates model text as code.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

AnswerMode = Literal["strict", "flexible"]
ANSWER_MODES: tuple[str, ...] = get_args(AnswerMode)
DEFAULT_MODE: AnswerMode = "flexible"

RULES = ("final_answer", "hashes", "answer_line", "boxed", "answer_is", "last_line")
"""The extraction rules, in the order `flexible` tries them (`strict` uses the first only)."""


def check_mode(mode: object, where: str = "answer_mode") -> AnswerMode:
    """`mode` when it is one of `ANSWER_MODES`; else a ValueError naming the choices."""
    if mode not in ANSWER_MODES:
        raise ValueError(f"{where} must be one of {', '.join(ANSWER_MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


# --------------------------------------------------------------------------- the answer span

_FINAL_MARKER = re.compile(
    r"final[ \t]*answer(?:[ \t*_]*(?::|：)|[ \t*_]+is\b[ \t*_]*(?::|：)?)", re.IGNORECASE
)
_ANSWER_IS = re.compile(
    r"\b(?:the|my|our)[ \t]+(?:(?:correct|right|best|only)[ \t]+)?(?:answer|option|choice)"
    r"(?:[ \t]+is\b(?:[ \t]+(?:for[ \t]+sure|therefore|thus|then|clearly|definitely|indeed))?"
    r"[ \t]*[:：]?|[ \t]*[:：])",
    re.IGNORECASE,
)
_HASHES = re.compile(r"^[ \t]*####[ \t]*(\S.*)$", re.MULTILINE)
_ANSWER_LINE = re.compile(
    r"^[ \t*_#>-]*(?:the[ \t]+)?(?:(?:correct|right|best)[ \t]+)?answer[ \t*_]*[:：][ \t*_]*(\S.*)$",
    re.IGNORECASE,
)
_BARE_ANSWER = re.compile(
    r"[A-Za-z]|-?\\?\$?\d[\d,]*(?:\.\d+)?(?:[ \t]*/[ \t]*\d+)?[ \t]*(?:%|\\%)?"
    r"|-?\\[dt]?frac\{\d+\}\{\d+\}"
)
"""What a `last_line` answer may be: one label, one number, one simple fraction."""
_RUN_ON = re.compile(r"\n[ \t*#]*(?:question|problem)[ \t]*\d*[ \t*]*[:：]", re.IGNORECASE)
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_EMPHASIS = "*_`"
_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


def find_final_marker(text: str) -> int | None:
    """Index just after the last "Final answer:" marker of `text`, or None when there is none."""
    last = None
    for match in _FINAL_MARKER.finditer(text):
        last = match
    return last.end() if last is not None else None


def _first_content(rest: str) -> str:
    """The first non-empty line of `rest`; a display-math block opened on it is kept whole."""
    lines = rest.split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip().strip(_EMPHASIS).strip()
        if not stripped:
            continue
        for opener, closer in (("$$", "$$"), ("\\[", "\\]")):
            if stripped == opener:
                block = [opener]
                for following in lines[i + 1 :]:
                    block.append(following.strip())
                    if following.strip().endswith(closer):
                        break
                return " ".join(block)
        return line.strip()
    return ""


def last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` or `\fbox{...}` in `text`, braces matched; else None.

    `\boxed 5` (no braces, a TeX idiom) gives "5". A last box whose brace never closes (a
    clipped generation) gives None rather than an earlier box; a `\boxed` not followed by an
    argument (prose such as "wrap it in \boxed,") is passed over.
    """
    best = max(text.rfind(command) for command in _BOX_COMMANDS)
    while best >= 0:
        content = _box_content(text, best)
        if content is _CLIPPED:
            return None
        if content is not None:
            return content
        best = max(text.rfind(command, 0, best) for command in _BOX_COMMANDS)
    return None


_CLIPPED = "\x00clipped"
"""`_box_content`'s marker for a box whose opening brace is never closed."""


def _box_content(text: str, start: int) -> str | None:
    """The argument of the box command at `start`; None if it has none, `_CLIPPED` if unclosed."""
    return _box_at(text, start)[0]


def _box_at(text: str, start: int) -> tuple[str | None, int]:
    """(`_box_content`, the index just after the box's argument) of the box command at `start`."""
    i = start + len("\\boxed") if text.startswith("\\boxed", start) else start + len("\\fbox")
    if text.startswith(" ", i) and i + 1 < len(text) and text[i + 1] not in "{ ":
        end = i + 1
        while end < len(text) and text[end] not in " $.,\n":
            end += 1
        return (text[i + 1 : end] or None), end
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None, i
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
    return _CLIPPED, len(text)


def unwrap_answer(span: str) -> str:
    r"""Remove markdown emphasis, one math delimiter pair and a `\boxed{}` around an answer.

    Text after a closing math delimiter ("$42$ dollars.") is dropped, as is a trailing period.
    Several math segments joined by words ("$-3$ or $2$", "the roots are $x=-3$ and $x=2$")
    give their contents joined by ", " ("-3, 2"), so that no part of a hedged or several-part
    answer is lost.
    """
    s = span.strip()
    for _ in range(3):
        s = s.strip().strip(_EMPHASIS).strip()
    boxed = last_boxed(s)
    if boxed is not None:
        return boxed.strip()
    joined = _joined_math(s)
    if joined is not None:
        return joined
    for opener, closer in _MATH_DELIMITERS:
        if s.startswith(opener):
            end = _find_unescaped(s, closer, len(opener))
            if end > len(opener):
                s = s[len(opener) : end]
            break
    s = s.strip().strip(_EMPHASIS).strip()
    return s.rstrip(".").strip()


_INLINE_MATH = (("\\(", "\\)"), ("$", "$"))
_CONNECTORS = re.compile(r"\s+|,|;|&|\b(?:and|or)\b", re.IGNORECASE)


def _joined_math(s: str) -> str | None:
    """The contents of 2+ inline math segments joined only by connectors, as "a, b"; else None.

    Words without digits may come before the first segment ("the roots are") and a short tail
    without digits after the last ("are the solutions.").
    """
    segments: list[tuple[int, int, str]] = []
    i = 0
    while len(segments) < 20:
        found = [(at, o, c) for o, c in _INLINE_MATH if (at := _find_opener(s, o, i)) >= 0]
        if not found:
            break
        at, o, c = min(found)
        end = _find_unescaped(s, c, at + len(o))
        if end <= at + len(o):
            return None
        segments.append((at, end + len(c), s[at + len(o) : end].strip()))
        i = end + len(c)
    if len(segments) < 2:
        return None
    prefix, suffix = s[: segments[0][0]], s[segments[-1][1] :]
    if re.search(r"\d|\$", prefix) or re.search(r"\d|\$", suffix) or len(suffix) > 40:
        return None
    for (_, end, _), (start, _, _) in itertools.pairwise(segments):
        if _CONNECTORS.sub("", s[end:start]):
            return None
    if not all(content for _, _, content in segments):
        return None
    return ", ".join(content for _, _, content in segments)


def _find_opener(s: str, opener: str, start: int) -> int:
    """Index of an unescaped `opener` ("$", not "\\$" or "$$"; or "\\(") at or after `start`."""
    i = s.find(opener, start)
    while i >= 0 and opener == "$" and ((i > 0 and s[i - 1] == "\\") or s.startswith("$$", i)):
        i = s.find(opener, i + 2)
    return i


def _find_unescaped(s: str, needle: str, start: int) -> int:
    """Index of the closing `needle` in `s` from `start`, or -1."""
    i = s.find(needle, start)
    while i > 0 and (s[i - 1] == "\\" or (needle == "$" and s[i + 1 : i + 2].isdigit())):
        i = s.find(needle, i + 1)  # "\$" is escaped; "$20" opens an amount, it closes nothing
    return i


def final_answer_span(text: str) -> str | None:
    """The unwrapped answer after the last "Final answer:" marker, or None.

    None means no marker, or a marker followed by nothing (a clipped generation).
    """
    at = find_final_marker(text)
    if at is None:
        return None
    span = unwrap_answer(_first_content(text[at:]))
    return span or None


def answer_is_span(text: str) -> str | None:
    """The unwrapped answer after the last "the answer is" ("the correct answer is", "the best
    answer is", "The answer: X", ...), or None."""
    last = None
    for match in _ANSWER_IS.finditer(text):
        line = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]
        if line.count("(") <= line.count(")"):  # not an aside: '"B" (the answer is not given)'
            last = match
    if last is None:
        return None
    span = unwrap_answer(_first_content(text[last.end() :]))
    return span or None


def boxed_group(text: str) -> list[str]:
    r"""The contents of the boxes that end `text`'s last run of boxes, in order.

    Boxes belong to one group when only separators stand between them (spaces, commas, "and",
    "or", `$`, `	ext{ and }`, `\quad`): `oxed{-3} 	ext{ and } oxed{2}` gives ["-3", "2"],
    `oxed{(1,4)}, oxed{(4,1)}` gives ["(1,4)", "(4,1)"]. Empty when `last_boxed` is None.
    """
    spans = _box_spans(text)
    if not spans or spans[-1][2] is None:
        return []
    group = [spans[-1]]
    for previous in reversed(spans[:-1]):
        if previous[2] is None or not _only_separators(text[previous[1] : group[0][0]]):
            break
        group.insert(0, previous)
    return [content.strip() for _, _, content in group if content is not None]


_SEPARATORS = re.compile(
    r"\\text\s*\{\s*(?:and|or|,)?\s*\}|\\(?:quad|qquad)\b|\\[,;: ]|\b(?:and|or)\b|[\s,;$]|\\\(|\\\)"
    r"|\b[A-Za-z](?:_\{?\w+\}?)?\s*=",
    re.IGNORECASE,
)


def _only_separators(gap: str) -> bool:
    return len(gap) <= 40 and not _SEPARATORS.sub("", gap)


def _box_spans(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, content) of every box command with an argument; content None if clipped."""
    spans: list[tuple[int, int, str | None]] = []
    i = 0
    while True:
        found = [at for at in (text.find(c, i) for c in _BOX_COMMANDS) if at >= 0]
        if not found:
            return spans
        start = min(found)
        content, end = _box_at(text, start)
        if content is _CLIPPED:
            spans.append((start, len(text), None))
            return spans
        if content is not None:
            spans.append((start, end, content))
        i = max(end, start + 1)


# --------------------------------------------------------------------------- locating answers


@dataclass(frozen=True)
class Candidate:
    """One place where a completion states its answer: the rule that found it, the unwrapped
    answer `span`, and for boxes the group of box contents that ends the text (`boxes`)."""

    rule: str
    span: str
    boxes: tuple[str, ...] = ()


def before_run_on(text: str) -> str:
    """`text` up to a "Question:" / "Problem:" line the model began after its answer."""
    for match in _RUN_ON.finditer(text):
        if text[: match.start()].strip():
            return text[: match.start()]
    return text


def candidates(text: str, mode: AnswerMode = DEFAULT_MODE) -> Iterator[Candidate]:
    """The answer statements of `text` in the order the mode tries them (module docstring).

    A task takes the first candidate whose span it can parse. With a marker followed by an
    answer, that is the only candidate.
    """
    at = find_final_marker(text)
    if at is not None:
        raw = _first_content(text[at:])
        span = unwrap_answer(raw)
        if span:
            yield Candidate("final_answer", span, tuple(boxed_group(raw)))
            return
    if mode == "flexible":
        yield from _fallbacks(before_run_on(text))


def _fallbacks(body: str) -> Iterator[Candidate]:
    """The `flexible` fall-backs of a text without a usable marker, in order."""
    hashes = list(_HASHES.finditer(body))
    if hashes and (span := unwrap_answer(hashes[-1].group(1))):
        yield Candidate("hashes", span)
    last = _last_line(body)
    line = _ANSWER_LINE.match(last)
    if line is not None and (span := unwrap_answer(line.group(1))):
        yield Candidate("answer_line", span, tuple(boxed_group(line.group(1))))
    box = last_boxed(body)
    if box is not None and box.strip():
        yield Candidate("boxed", box.strip(), tuple(boxed_group(body)))
    stated = answer_is_span(body)
    if stated is not None:
        yield Candidate("answer_is", stated)
    if last and len(last) <= 40:
        span = unwrap_answer(last)
        if _BARE_ANSWER.fullmatch(span.strip("()[]*_`\"' ").rstrip(".").strip()):
            yield Candidate("last_line", span)


def _last_line(text: str) -> str:
    for line in reversed(text.split("\n")):
        if line.strip().strip(_EMPHASIS).strip():
            return line.strip()
    return ""


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)(?:\s*/\s*\d+(?![\d.]))?"
    r"|(?<![\w.])-?\.\d+(?!\d)"
)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}")
_DIGIT_BEFORE_FRAC = re.compile(r"(?<=\d)\s*(?=\\[dt]?frac\b)")
_MIXED = re.compile(r"(?<![\w.,/])(-?)(\d+)[ \t]+(\d+)[ \t]*/[ \t]*(\d+)(?![\d.,/])")
_SPACED_THOUSANDS = re.compile(
    r"(?<![\w.,/])\d{1,3}(?:[ \u00a0\u2009\u202f]\d{3})+(?![\d/]|[ \t]*/|[.,]\d)"
)
_SCALES = {
    "hundred": 100,
    "thousand": 10**3,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
}
_SCALED = re.compile(
    r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)[ \t]*(hundred|thousand|million|billion|trillion)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"\n|;|\.(?=\s|$)|\bquestion\s*:", re.IGNORECASE)
_OPERATOR_AFTER = re.compile(r"\s*(?:[-+*/^×÷x,]|and\b|or\b)\s*\$?-?\d")


def _plain_text(span: str) -> str:
    """Rewrite the LaTeX that answers to arithmetic questions use into plain text."""
    s = span.replace("\u2212", "-").replace("\\$", "$").replace("{,}", ",").replace("\\%", "%")
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    s = _LATEX_FRAC.sub(r"\1/\2", _DIGIT_BEFORE_FRAC.sub(" ", s))  # 2\frac{1}{4}: 2 1/4
    s = _LATEX_TEXT.sub(r" \1", s)
    return s.replace("\\times", "*").replace("\\cdot", "*")


def _rewrite_numbers(s: str) -> str:
    """Mixed numbers ("2 1/4" -> "9/4"), spaced thousands ("12 500" -> "12500") and scale words
    ("700 million" -> "700000000", "2.5 thousand" -> "2500") as single number tokens."""
    s = _MIXED.sub(_mixed, s)
    s = _SPACED_THOUSANDS.sub(lambda m: re.sub(r"\s", "", m.group()), s)
    return _SCALED.sub(_scaled, s)


def _mixed(match: re.Match[str]) -> str:
    sign, whole, numerator, denominator = match.groups()
    if not 0 < int(numerator) < int(denominator):
        return match.group()
    value = (int(whole) * int(denominator) + int(numerator)) * (-1 if sign else 1)
    return f"{value}/{denominator}"


def _scaled(match: re.Match[str]) -> str:
    value = Fraction(match.group(1).replace(",", "")) * _SCALES[match.group(2).lower()]
    return format_number(value)


def _to_fraction(token: str) -> Fraction | None:
    token = token.replace(",", "").replace(" ", "")
    try:
        if "/" in token:
            numerator, denominator = token.split("/")
            if int(denominator) == 0:
                return None
            return Fraction(numerator) / int(denominator)
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def parse_number(span: str) -> Fraction | None:
    """The number a final-answer span states, or None when there is none or it is ambiguous.

    Rules, on the span's first sentence: the number right after its last "="
    ("16 - 3 - 4 = 9 eggs" -> 9); else a number that opens it ("$1,080.00 in total" -> 1080,
    "42%" -> 42) unless an operator or another number follows ("18 * 2", "2 or 3" -> None); else its only number
    ("she makes $18 a day" -> 18); else None.
    """
    sentence = _rewrite_numbers(_SENTENCE_END.split(_plain_text(span), maxsplit=1)[0])
    if "=" in sentence:
        after = sentence[sentence.rfind("=") + 1 :]
        match = _NUMBER.search(after)
        if match is None or re.search(r"\w", after[: match.start()]):
            return None
        return _to_fraction(match.group())
    tokens = list(_NUMBER.finditer(sentence))
    if not tokens:
        return None
    first = tokens[0]
    if not re.search(r"\w", sentence[: first.start()]):
        if _OPERATOR_AFTER.match(sentence, first.end()):
            return None
        return _to_fraction(first.group())
    if len(tokens) == 1:
        return _to_fraction(first.group())
    return None


def format_number(value: Fraction) -> str:
    """Canonical text of a number: "7", "-3", "3.5", or "1/3" when no finite decimal exists."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = 0
    scaled = value
    while scaled.denominator != 1:
        scaled *= 10
        digits += 1
    sign = "-" if scaled < 0 else ""
    magnitude = str(abs(scaled.numerator)).rjust(digits + 1, "0")
    return f"{sign}{magnitude[:-digits]}.{magnitude[-digits:]}"


def normalize_number(text: str) -> str | None:
    """`parse_number` then `format_number`: "1,080" -> "1080", "$3.50" -> "3.5"; None if none."""
    value = parse_number(text)
    return format_number(value) if value is not None else None


def locate_number(
    completion: str, mode: AnswerMode = DEFAULT_MODE
) -> tuple[Fraction, str] | tuple[None, str | None]:
    """(the number a completion gives as its final answer, the rule that found it); the number
    is None when none parses, and the rule None when no answer statement was found at all."""
    first_rule = None
    for candidate in candidates(completion, mode):
        first_rule = first_rule or candidate.rule
        value = parse_number(candidate.span)
        if value is not None:
            return value, candidate.rule
    return None, first_rule


def extract_number(completion: str, *, mode: AnswerMode = DEFAULT_MODE) -> Fraction | None:
    """The number a completion gives as its final answer (module docstring: rules, modes)."""
    return locate_number(completion, mode)[0]
