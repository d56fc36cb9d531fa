"""Text of observed outputs and of argument values, as `tainted_by` compares them (2.7).

Both sides are normalized the same way: Unicode NFKC, casefold, invisible characters
removed (Unicode's Default_Ignorable_Code_Point: zero-width spaces and joiners, the soft
hyphen, bidi controls, the BOM, variation selectors, tag characters; an attacker can put
them inside an IBAN in an e-mail, where nobody sees them and a model copying the IBAN
drops them), and every run of whitespace collapsed to one space (leading and trailing
whitespace dropped); `tainted_by`
then compares them with all whitespace removed (`compact`), so a value re-spaced on
the way from the output to the call (``DE89 3704 …`` read, ``DE893704…`` paid) is
still found. Numbers
are compared as their text (``100.0`` is ``100``); booleans and null carry no text.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

import re2

__all__ = ["compact", "extract_text", "normalize", "number_text", "value_texts"]

_MAX_DEPTH = 64

#: Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt): characters that
#: render as nothing. Removed after NFKC (which maps U+3164 and U+FFA0 to U+1160, also
#: here). tests/core/runs/test_flow_hostile_text.py checks it covers every format
#: character (Cf) but the few that are visible or not ignorable.
DEFAULT_IGNORABLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_INVISIBLE = re2.compile(f"[{DEFAULT_IGNORABLE}]")


def _visible(text: str) -> str:
    """NFKC without invisible characters (only non-ASCII text has any)."""
    text = unicodedata.normalize("NFKC", text)
    return _INVISIBLE.sub("", text) if _INVISIBLE.search(text) else text


def normalize(text: str) -> str:
    """NFKC, casefold, invisible characters removed, whitespace collapsed: the form
    both sides of `tainted_by` take."""
    if not text.isascii():
        text = _visible(text)
    return " ".join(text.casefold().split())


def compact(text: str) -> str:
    """`normalize` without any whitespace: the form `tainted_by` searches."""
    if not text.isascii():
        text = _visible(text)
    return "".join(text.casefold().split())


def number_text(value: int | float) -> str:
    """A number as text: integral floats without their ``.0`` (``100.0`` -> ``100``)."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return repr(value)
    return str(value)


def extract_text(output: Any) -> str:
    """The text an output gives to a run: a string as it is; the string and number
    leaves and the object keys of JSON-like values (dict/list/tuple), joined by
    newlines; an object with ``model_dump()`` by its dump, one with ``content`` or
    ``text`` by that; anything else by ``str()``."""
    if isinstance(output, str):
        return output
    return "\n".join(_parts(output, 0))


def _parts(value: Any, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        yield str(value)
        return
    if isinstance(value, str):
        yield value
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int | float):
        yield number_text(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _parts(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _parts(item, depth + 1)
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("utf-8", "replace")
    elif callable(getattr(value, "model_dump", None)):
        yield from _parts(value.model_dump(), depth + 1)
    elif hasattr(value, "content") and not callable(value.content):
        yield from _parts(value.content, depth + 1)
    elif hasattr(value, "text") and not callable(value.text):
        yield from _parts(value.text, depth + 1)
    else:
        yield str(value)


def value_texts(value: Any) -> Iterator[str]:
    """The leaves of an argument value as text (not normalized): a string or a number
    is one leaf; a list or an object gives its leaves (values, not keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield number_text(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from value_texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from value_texts(item)
    else:
        raise TypeError(f"a {type(value).__name__} value has no text to compare")
