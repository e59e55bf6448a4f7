"""A JSON document cut short, closed again: `repair_cut(text)` is the cut text's longest prefix that ends
after a complete value, with its open containers closed, or None when the text is not a cut document.

Bodies are cut by whoever hands them over: a browser's HAR truncates response and request text, the ICAP
service stops at `icap.max_body_bytes`, the wire agent at `sampling.max_payload_bytes_per_flow`. Scanned as
text, a minified export is one line, so one record, and the collector would link every identifier in it
into one person; closed again, its complete records keep the record indices they have in the uncut body
and the cut record keeps its complete members.

What counts as cut: `json.loads` fails at the end of the text (after trailing white space), or at the
start of what can only be the beginning of the last token — a string without its closing quote (a cut
`\\uXXXX` escape in it included), a number, `true`, `false`, `null`. A body broken anywhere else is not a
cut and stays malformed.

The value at the cut is dropped, not kept as if whole: a number may have lost digits and a string its end
(half a resident ID number could validate as something else). A string value is kept once its closing quote
is in; an object key without its value is dropped.

The scan is linear: a regex skips strings (escapes included) and scalars in C, and the loop in Python sees
only the strings and the punctuation, keeping the container stack and where the last complete value ended.
"""

from __future__ import annotations

import json
import re

# A whole string, one structural character, or a quote that opens a string never closed (the cut one).
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]|"', re.S)
# What may follow the offset json.loads gives up at, for the text to be a cut document: white space, the
# start of a string, of a number (json stops at a cut one's `.` or `e`) or of a literal. Each alternative
# is unambiguous (no two ways to match a character), so a long tail that is no cut fails in linear time.
_CUT_TAIL = re.compile(r"""
      "[^"\\]*(?:\\.[^"\\]*)*\\?                                 # a string without its closing quote
    | (?:-?[0-9]*(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?                  # a number
       | t(?:r(?:ue?)?)? | f(?:a(?:l(?:se?)?)?)? | n(?:u(?:ll?)?)?  # a literal
      )\s*""", re.S | re.X)
# json reports a cut `\uXXXX` escape (of a surrogate pair, too) at its `u`.
_CUT_ESCAPE = re.compile(r"u[0-9a-fA-F]{0,4}(?:\\(?:u[0-9a-fA-F]{0,3})?)?\s*")
_CLOSE = {"{": "}", "[": "]"}


def is_cut(text: str, error: json.JSONDecodeError) -> bool:
    """Whether json.loads' `error` on `text` says the document was cut rather than broken."""
    if error.msg.startswith("Invalid \\uXXXX"):
        return _CUT_ESCAPE.fullmatch(text, error.pos) is not None
    return error.msg != "Extra data" and _CUT_TAIL.fullmatch(text, error.pos) is not None


def repair_cut(text: str, error: json.JSONDecodeError | None = None) -> str | None:
    """The cut document `text` (json.loads failed on it with `error`) closed after its last complete value;
    None when it is not a cut document or nothing complete is in it (the caller scans it as text). Without
    `error` the text is parsed here first; a whole document is returned as it is."""
    if error is None:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            error = exc
        except (ValueError, RecursionError):
            return None
        else:
            return text
    cut = cut_prefix(text, error)
    return None if cut is None else text[:cut[0]] + cut[1]


def cut_prefix(text: str, error: json.JSONDecodeError) -> tuple[int, str] | None:
    """(length of the prefix kept, the brackets that close it) for the cut document `text` on which
    json.loads failed with `error`; None as for repair_cut."""
    if not is_cut(text, error):
        return None
    end = _last_complete(text, error.pos)
    if end is None:
        return None
    kept, stack = end
    return kept, "".join(_CLOSE[c] for c in reversed(stack))


def _last_complete(text: str, limit: int) -> tuple[int, list[str]] | None:
    """(offset, open containers there) of the longest prefix of `text[:limit]`'s document that ends after a
    complete value or member (or an opened container); None when there is none. `text` up to `limit` is
    valid JSON as far as it goes (json.loads failed only there), so the tokens can be trusted."""
    stack: list[str] = []
    best: tuple[int, int] | None = None      # (offset, stack depth) of the last complete value
    after_colon = False
    for m in _TOKEN.finditer(text, 0, limit):
        tok = m.group()
        first = tok[0]
        if first == '"':
            if len(tok) == 1:
                break                        # the cut string
            # A string is a value in an array, or after a key's colon; else it is a key.
            if stack and (stack[-1] == "[" or after_colon):
                best = (m.end(), len(stack))
        elif first in "{[":
            stack.append(first)
            best = (m.end(), len(stack))
        elif first in "}]":
            if not stack:
                return None
            stack.pop()
            best = (m.end(), len(stack))
        elif first == ",":
            best = (m.start(), len(stack))   # the value before the comma is complete
        after_colon = first == ":"
    if best is None:
        return None
    # Between the last complete value and the cut only containers were opened (a closing bracket or a comma
    # would be one more complete value), so the stack there is a prefix of the stack at the cut.
    return best[0], stack[:best[1]]
