"""Final-answer extraction and number normalisation, shared by every task.

IRPO rewards a sample when "the answer after 'Final answer:'" matches the gold answer (paper,
Sec. 2, step 2). A false negative here labels a correct sample as a *loser*, a false positive
labels a wrong one as a *winner*, so the rules are explicit and conservative:

1. The answer follows the LAST "Final answer:" in the text (case-insensitive; also
   "**Final answer:**", "Final Answer**:", "final answer is"). Only the first non-empty line after
   it is used, so run-on text on later lines never counts.
2. Inside that span, markdown emphasis, a surrounding `$...$` / `\\(...\\)` / `\\[...\\]` and a
   `\\boxed{...}` / `\\fbox{...}` wrapper are removed (`final_answer_span`).
3. Fall-backs, used only when no "Final answer" marker exists at all: the last `\\boxed{...}`
   in the text; then (not for math answers) the last "the answer is X".
   A marker followed by nothing usable (a clipped generation) is unparsed: no fall-back, since
   an earlier boxed value would then be a guess.

Numbers (`parse_number`): thousands separators ("1,080"), a leading "$", a trailing "%" or unit
word, a unicode minus, "3.50" == "3.5", "5.0" == "5", simple fractions ("3/4", `\\frac{3}{4}`).
An answer span whose number is ambiguous (several numbers and no "=", or a bare expression such
as "18 * 2") is unparsed rather than guessed.

Nothing here evaluates model text as code.
"""

from __future__ import annotations

import re
from fractions import Fraction

# --------------------------------------------------------------------------- the answer span

_FINAL_MARKER = re.compile(
    r"final[ \t]*answer(?:[ \t*_]*(?::|：)|[ \t*_]+is\b[ \t*_]*(?::|：)?)", re.IGNORECASE
)
_ANSWER_IS = re.compile(r"\bthe[ \t]+answer[ \t]+is\b[ \t]*:?", re.IGNORECASE)
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
    i = start + len("\\boxed") if text.startswith("\\boxed", start) else start + len("\\fbox")
    if text.startswith(" ", i) and i + 1 < len(text) and text[i + 1] not in "{ ":
        end = i + 1
        while end < len(text) and text[end] not in " $.,\n":
            end += 1
        return text[i + 1 : end] or None
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return _CLIPPED


def unwrap_answer(span: str) -> str:
    r"""Remove markdown emphasis, one math delimiter pair and a `\boxed{}` around an answer.

    Text after a closing math delimiter ("$42$ dollars.") is dropped, as is a trailing period.
    """
    s = span.strip()
    for _ in range(3):
        s = s.strip().strip(_EMPHASIS).strip()
    boxed = last_boxed(s)
    if boxed is not None:
        return boxed.strip()
    for opener, closer in _MATH_DELIMITERS:
        if s.startswith(opener):
            end = _find_unescaped(s, closer, len(opener))
            if end > len(opener):
                s = s[len(opener) : end]
            break
    s = s.strip().strip(_EMPHASIS).strip()
    return s.rstrip(".").strip()


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
    """The unwrapped answer after the last "the answer is" (a fall-back for number answers)."""
    last = None
    for match in _ANSWER_IS.finditer(text):
        last = match
    if last is None:
        return None
    span = unwrap_answer(_first_content(text[last.end() :]))
    return span or None


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)(?:\s*/\s*\d+(?![\d.]))?"
    r"|(?<![\w.])-?\.\d+(?!\d)"
)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}")
_SENTENCE_END = re.compile(r"\n|;|\.(?=\s|$)|\bquestion\s*:", re.IGNORECASE)
_OPERATOR_AFTER = re.compile(r"\s*(?:[-+*/^×÷x,]|and\b|or\b)\s*\$?-?\d")


def _plain_text(span: str) -> str:
    """Rewrite the LaTeX that answers to arithmetic questions use into plain text."""
    s = span.replace("\u2212", "-").replace("\\$", "$").replace("{,}", ",").replace("\\%", "%")
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    s = _LATEX_FRAC.sub(r"\1/\2", s)
    s = _LATEX_TEXT.sub(r" \1", s)
    return s.replace("\\times", "*").replace("\\cdot", "*")


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
    sentence = _SENTENCE_END.split(_plain_text(span), maxsplit=1)[0]
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


def extract_number(completion: str, *, fallbacks: bool = True) -> Fraction | None:
    """The number a completion gives as its final answer (module docstring: rules, fall-backs)."""
    span = final_answer_span(completion)
    if span is not None:
        return parse_number(span)
    if find_final_marker(completion) is not None or not fallbacks:
        return None
    boxed = last_boxed(completion)
    if boxed is not None:
        return parse_number(boxed)
    stated = answer_is_span(completion)
    return parse_number(stated) if stated is not None else None
