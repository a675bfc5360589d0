"""Is the first data row of a text table a header? Decided by the *shape* of its tokens against the
sampled rows below it, not by a list of names alone (docs/ingest-inputs.md, "header").

The first row is a header when
  1. not all of its tokens are numbers, and
  2. none of its (non-numeric) tokens appears again anywhere in the sampled rows below (ids
     repeat, column names do not), and
  3. every token is a known column name (`source`, `dst`, `node_id`, ...) or differs in form from
     the values of its column below it:
       - number:   the values are all numbers, the token is not;
       - digits:   the values all hold a digit and the token none, or the other way round;
       - skeleton: the values share one punctuation skeleton (runs of letters and digits
                   collapsed: 'user_17' -> 'x_x', a UUID -> 'x-x-x-x-x') and the token's differs;
       - prefix:   (>= 8 values, >= 4 distinct) the values share a literal letter prefix ('n' of
                   'n17') that the token does not start with;
       - length:   (>= 8 values, >= 4 distinct) the values all have one length and the token
                   another.
So ids drawn from one generator never make a header of the first row (each rule compares the
token with a property that *all* values below share), and a row of names over ids does.
Pure Python on at most 64 rows: this runs once per file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER_RE = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*|\s*[-+]?(nan|inf|infinity)\s*",
                       re.IGNORECASE)
KNOWN_NAMES = frozenset({
    "source", "target", "src", "dst", "dest", "destination", "from", "to", "u", "v", "head", "tail",
    "id", "node", "nodes", "node_id", "nodeid", "weight", "w", "label", "split", "sender",
    "receiver", "i", "j", "start", "end", "time", "timestamp"})
_NAME_PARTS = ("node", "source", "target", "weight", "src", "dst", "_id", "label")
_ALNUM_RUN = re.compile(r"[^\W_]+")
_LETTER_PREFIX = re.compile(r"[^\W\d_]*")
MIN_VALUES_FOR_PREFIX_AND_LENGTH = 8
MIN_DISTINCT = 4


@dataclass
class HeaderGuess:
    """The decision and why: `reason` names the token and the rule (for logs and the manifest)."""

    is_header: bool
    reason: str


def clean_token(field: str) -> str:
    """A field as compared here: blanks and one level of double quotes stripped."""
    return field.strip().strip('"').strip()


def is_number(token: str) -> bool:
    return NUMBER_RE.fullmatch(token) is not None


def is_known_name(token: str) -> bool:
    """A column name we know, or one built from a known part without digits ('source_node')."""
    t = token.lower()
    return t in KNOWN_NAMES or (any(p in t for p in _NAME_PARTS) and not any(c.isdigit() for c in t))


def _skeleton(token: str) -> str:
    return _ALNUM_RUN.sub("x", token)


def _has_digit(token: str) -> bool:
    return any(c.isdigit() for c in token)


def _common_letter_prefix(values: list[str]) -> str:
    prefix = _LETTER_PREFIX.match(values[0]).group(0)
    for v in values[1:]:
        k = 0
        while k < len(prefix) and k < len(v) and prefix[k] == v[k]:
            k += 1
        prefix = prefix[:k]
        if not prefix:
            break
    return prefix


def differs_in_form(token: str, values: list[str]) -> str | None:
    """The rule by which `token` differs from every value of its column, or None."""
    if not values:
        return None
    if all(is_number(v) for v in values):
        return None if is_number(token) else "number"
    digits = [_has_digit(v) for v in values]
    if all(digits) and not _has_digit(token):
        return "digits"
    if not any(digits) and _has_digit(token):
        return "digits"
    shapes = {_skeleton(v) for v in values}
    if len(shapes) == 1 and _skeleton(token) not in shapes:
        return "skeleton"
    # a shared prefix or length only says something about a column of varied values: a constant
    # column (every edge to one hub) shares everything with itself
    if len(values) >= MIN_VALUES_FOR_PREFIX_AND_LENGTH and len(set(values)) >= MIN_DISTINCT:
        prefix = _common_letter_prefix(values)
        if prefix and not token.startswith(prefix):
            return "prefix"
        lengths = {len(v) for v in values}
        if len(lengths) == 1 and len(token) not in lengths:
            return "length"
    return None


def guess_header(first: list[str], rest: list[list[str]]) -> HeaderGuess:
    """Apply the module's rules to the first row's fields and the sampled rows below it."""
    tokens = [clean_token(f) for f in first]
    if all(is_number(t) for t in tokens):
        return HeaderGuess(False, "every field is a number")
    below = [[clean_token(f) for f in r] for r in rest]
    seen = {t for r in below for t in r}
    for t in tokens:
        if not is_number(t) and t in seen:
            return HeaderGuess(False, f"{t!r} appears again below the first row")
    reasons, plain, strong = [], None, None
    for k, t in enumerate(tokens):
        if is_known_name(t):
            reasons.append(f"{t!r}: a column name")
            continue
        rule = differs_in_form(t, [r[k] for r in below if k < len(r)])
        if rule is None:
            plain = plain or t
        else:
            reasons.append(f"{t!r}: {rule}")
            # only a digit-free word: '0x1f' or 'a17' over numbers is an id of another form
            # (hex, a first row of letters-and-digits ids), not a name
            strong = strong or (t if rule == "number" and not _has_digit(t) else None)
    if plain is None:
        return HeaderGuess(True, "; ".join(reasons))
    if strong is not None:   # a word (no digits) over a column of numbers: a name over a damaged column
        return HeaderGuess(True, f"{strong!r} is not a number where every value below is")
    return HeaderGuess(False, f"{plain!r} has the form of the values below it")
