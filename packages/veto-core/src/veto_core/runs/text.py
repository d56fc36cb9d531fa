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

An output's text is a superset of what the model may read of it: an object's dump *and*
its ``str()`` (a framework may show either; a field excluded from the dump or a custom
``__str__`` would otherwise carry text nobody recorded). Parts whose content Veto cannot
read as text (images, files, audio: the model provider reads them) make the output
"unreadable" (`read_output`): its text is incomplete, as if lost at the bound, so flow
rules cannot answer "not tainted" for its labels (fail closed).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

import re2

__all__ = ["compact", "extract_text", "normalize", "number_text", "read_output", "value_texts"]

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


#: Content parts a model provider reads but whose content is not text here (LangChain
#: content blocks, OpenAI Agents SDK tool outputs, MCP content): ``type`` and a payload.
_OPAQUE_TYPES = frozenset(
    {"image", "image_url", "input_image", "file", "input_file", "audio", "input_audio",
     "video", "resource_link", "document"}
)  # fmt: skip
_OPAQUE_PAYLOADS = frozenset(
    {"data", "base64", "image_url", "file_data", "file_id", "url", "file_url", "uri", "blob",
     "input_audio", "source"}
)  # fmt: skip


def _opaque(part: Mapping[Any, Any]) -> bool:
    """A content part whose content is not text: an image, file or audio part with its
    payload, or an MCP embedded binary resource."""
    kind = part.get("type")
    if not isinstance(kind, str):
        return False
    if kind in _OPAQUE_TYPES:
        return not _OPAQUE_PAYLOADS.isdisjoint(part)
    resource = part.get("resource")
    return kind == "resource" and isinstance(resource, Mapping) and "blob" in resource


def extract_text(output: Any) -> str:
    """The text an output gives to a run: a string as it is; the string and number
    leaves and the object keys of JSON-like values (dict/list/tuple), joined by
    newlines; an object with ``model_dump()`` by its dump, one with ``content`` or
    ``text`` by that, each followed by its ``str()``; anything else by ``str()``."""
    return read_output(output)[0]


def read_output(output: Any) -> tuple[str, bool]:
    """``(text, unreadable)``: `extract_text`, and whether the output has parts whose
    content is not text (an image, a file, audio: see the module docstring)."""
    if isinstance(output, str):
        return output, False
    gaps: list[bool] = []
    text = "\n".join(_parts(output, 0, gaps))
    return text, bool(gaps)


def _parts(value: Any, depth: int, gaps: list[bool]) -> Iterator[str]:
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
        if _opaque(value):
            gaps.append(True)
        for key, item in value.items():
            yield str(key)
            yield from _parts(item, depth + 1, gaps)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _parts(item, depth + 1, gaps)
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("utf-8", "replace")
    elif callable(getattr(value, "model_dump", None)):
        yield from _parts(value.model_dump(), depth + 1, gaps)
        yield str(value)  # what a framework showing str() shows (excluded fields too)
    elif hasattr(value, "content") and not callable(value.content):
        yield from _parts(value.content, depth + 1, gaps)
        yield str(value)
    elif hasattr(value, "text") and not callable(value.text):
        yield from _parts(value.text, depth + 1, gaps)
        yield str(value)
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
