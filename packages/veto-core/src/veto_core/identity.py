"""Canonical identities (DESIGN.md 2.8): one spelling for every user id, e-mail and role
that approvals and limits compare or key on.

``"Alice "``, ``"alice"`` and its full-width copy are one identity; an id that
carries characters a person cannot see (control, zero-width, bidi, invisible fillers)
is refused instead of being silently a second identity. Everything that compares an
approver with a requester, counts a quorum or builds a limit key goes through
:func:`canonical_identity`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = [
    "IdentityError",
    "canonical_identity",
    "canonical_or_none",
    "canonical_set",
    "same_identity",
]

# Invisible characters that are not in the "format"/"control" categories.
_INVISIBLE = frozenset(
    {
        0x034F,  # combining grapheme joiner
        0x115F,  # hangul choseong filler
        0x1160,  # hangul jungseong filler
        0x17B4,  # khmer vowel inherent aq
        0x17B5,  # khmer vowel inherent aa
        0x180B,  # mongolian free variation selectors
        0x180C,
        0x180D,
        0x180F,
        0x2800,  # braille pattern blank
        0x3164,  # hangul filler
        0xFFA0,  # halfwidth hangul filler
    }
)
# Cc control, Cf format (zero-width and bidi controls), Cs surrogates, Co private use,
# Cn unassigned, Zl / Zp line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
MAX_LENGTH = 320  # an e-mail address is at most 254; room for user ids, never megabytes


class IdentityError(ValueError):
    """An id that cannot be an identity (empty, too long, or with hidden characters)."""


def _refused(ch: str) -> bool:
    cp = ord(ch)
    if cp in _INVISIBLE or 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:
        return True  # variation selectors render as nothing
    return unicodedata.category(ch) in _REFUSED_CATEGORIES


def canonical_identity(value: str, *, what: str = "identity") -> str:
    """The canonical form of a user id, e-mail or role name: NFKC, casefold, strip.

    Raises :class:`IdentityError` for a non-string, an empty id, an id longer than
    320 characters, or one containing control, zero-width, bidi or other invisible
    characters (refused, never stripped: a hidden character is a sign of spoofing).
    """
    if not isinstance(value, str):
        raise IdentityError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > MAX_LENGTH:
        raise IdentityError(f"{what} is longer than {MAX_LENGTH} characters")
    for ch in value:
        if _refused(ch):
            name = unicodedata.name(ch, repr(ch))
            raise IdentityError(
                f"{what} {value!r} contains U+{ord(ch):04X} ({name}); control, zero-width "
                "and bidi characters are not allowed in identities"
            )
    # NFKC, then casefold, then NFKC again: casefolding can leave a string that is not
    # normalized (Unicode's NFKC_Casefold is defined the same way).
    out = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold()).strip()
    if not out:
        raise IdentityError(f"{what} must not be empty")
    for ch in out:  # normalization never introduces them, but check what we return
        if _refused(ch):  # pragma: no cover - defensive
            raise IdentityError(f"{what} {value!r} normalizes to a hidden character")
    return out


def canonical_or_none(value: str | None, *, what: str = "identity") -> str | None:
    """``canonical_identity(value)``, or None when ``value`` is None or blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return canonical_identity(value, what=what)


def same_identity(a: str, b: str) -> bool:
    """Whether two ids are the same identity (False if either is not a valid id)."""
    try:
        return canonical_identity(a) == canonical_identity(b)
    except IdentityError:
        return False


def canonical_set(values: Iterable[str | None], *, what: str = "identity") -> frozenset[str]:
    """The canonical identities among ``values`` (None and blank ones skipped)."""
    out = set()
    for v in values:
        c = canonical_or_none(v, what=what)
        if c is not None:
            out.add(c)
    return frozenset(out)
