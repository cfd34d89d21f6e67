"""The process that runs Math-Verify for `irpo.tasks.math_judge` (`python -m irpo.tasks.math_worker`).

Protocol: one JSON request per stdin line, one JSON reply per stdout line; the first line out is
{"ready": true} once Math-Verify is imported.
  {"op": "parse", "text": T}               -> {"ok": true when T parses to a SymPy object}
  {"op": "verify", "gold": G, "pred": P}  -> {"ok": Math-Verify's verify(parse(G), parse(P))}
For "verify", two exact numbers (no symbols, no decimals: rationals, powers, factorials such as
`\\frac{1}{3^{40}}` or `1/500!`) are first compared exactly with SymPy, and two decimals as
decimals; a difference Math-Verify's numeric tolerance would hide decides "not equal" there.
Math-Verify's own signal-based time limits are switched off (`parsing_timeout=None`,
`timeout_seconds=None`): the parent enforces a wall-clock limit and kills this process when a
request overruns, which works from any thread of the parent.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def _parsed(text: str) -> list[Any]:
    from math_verify import parse

    return list(parse(text, parsing_timeout=None))


def exact_verdict(gold: list[Any], pred: list[Any]) -> bool | None:
    """Equal / not equal when both parsed answers are exact numbers, else None (module
    docstring). Non-rational exact numbers (`\\sqrt{2}/2^{100}`) count as different when they
    differ by more than 1e-15 relative at 30 digits."""
    import sympy

    a = next((x for x in gold if not isinstance(x, str)), None)
    b = next((x for x in pred if not isinstance(x, str)), None)
    if not isinstance(a, sympy.Expr) or not isinstance(b, sympy.Expr):
        return None
    if a.free_symbols or b.free_symbols:
        return None
    if a.has(sympy.Float) or b.has(sympy.Float):
        if a.is_Float and b.is_Float:
            return bool(sympy.Rational(str(a)) == sympy.Rational(str(b)))
        return None
    a, b = a.doit(), b.doit()
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    if not (a.is_number and b.is_number and a.is_finite and b.is_finite):
        return None
    scale = max(abs(sympy.N(a, 30)), abs(sympy.N(b, 30)))
    if scale == 0:
        return None
    difference = abs(sympy.N(a - b, 30))
    return False if difference / scale > sympy.Float("1e-15") else None


def handle(request: dict[str, Any]) -> bool:
    """Answer one request (see the module docstring)."""
    from math_verify import verify

    if request["op"] == "parse":
        return any(not isinstance(x, str) for x in _parsed(request["text"]))
    gold, pred = _parsed(request["gold"]), _parsed(request["pred"])
    if not gold or not pred:
        return False
    try:
        exact = exact_verdict(gold, pred)
    except Exception:  # SymPy could not evaluate one side: Math-Verify decides
        exact = None
    if exact is not None:
        return exact
    return bool(verify(gold, pred, timeout_seconds=None))


def main() -> None:
    logging.disable(logging.WARNING)  # Math-Verify warns that its own time limit is off
    import math_verify  # noqa: F401  (import before announcing readiness)

    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            reply: dict[str, Any] = {"ok": handle(json.loads(line))}
        except Exception as e:  # a reply must always come back, whatever the input
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
