"""The process that runs Math-Verify for `irpo.tasks.math_judge` (`python -m irpo.tasks.math_worker`).

Protocol: one JSON request per stdin line, one JSON reply per stdout line; the first line out is
{"ready": true} once Math-Verify is imported.
  {"op": "parse", "text": T}               -> {"ok": true when T parses to a SymPy object}
  {"op": "verify", "gold": G, "pred": P}  -> {"ok": Math-Verify's verify(parse(G), parse(P))}
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


def handle(request: dict[str, Any]) -> bool:
    """Answer one request (see the module docstring)."""
    from math_verify import verify

    if request["op"] == "parse":
        return any(not isinstance(x, str) for x in _parsed(request["text"]))
    gold, pred = _parsed(request["gold"]), _parsed(request["pred"])
    if not gold or not pred:
        return False
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
