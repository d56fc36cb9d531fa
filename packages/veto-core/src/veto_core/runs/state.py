"""The state of one run, built from its `RunEvent`s, with a fast taint lookup (2.7).

A `RunState` is what flow rules read: ``labels`` (every label acquired so far, kept
even when an output's text was dropped), ``calls`` (earlier calls, oldest first, each
``{tool, args, effect}``; pseudo-tool observations are not calls) and the normalized
text of each labelled observation, at most `MAX_TEXT_BYTES` per run (the oldest
outputs' text is dropped first).

Taint lookup (`tainted`): a value is tainted by a label when its normalized text
occurs inside the normalized text of ONE observation carrying that label, compared
without whitespace (`text.compact`: a value re-spaced between the output and the call
is still found). Each observation's text is normalized once, when it is added
(observe time); per label, the kept texts without whitespace are joined with NUL
separators into one haystack (extended lazily with new observations' text, one C-level
join; rebuilt only after the bound dropped text),
so a lookup is one C substring search per label, and a value without NUL never spans
two observations.
Answers are memoized per state and value (cleared when the state grows), the way the
engine memoizes other pure string operators.

Most values a flow rule checks do not occur (an agent pays each payee once), so a
sparse index rejects them without searching: per label, the hashes of the 8-character
windows that start at every 8th position of each observation's text. A value of at
least 15 characters that occurs contains one of those windows whole, at one of its own
offsets 0..7; if none of its 8 windows is in the index it does not occur. The index is
a Bloom filter (a bytearray, two one-byte slots per window, 16 slots per window,
sized for twice the kept windows): it can say "maybe" wrongly (~1.5% of absent values),
never "absent" wrongly, and every "maybe" is the substring search above, so answers are
exactly those of the search (tests/core/runs/test_taint_index.py). Memory: 4-8 bytes
per character of labelled text (about 6 MB per MiB measured), against ~17 MB per MiB
for a set of window hashes and ~90 bytes per window for a dense index. It is built
lazily for haystacks of 16 KiB or more, and only once the searches it would have
answered since its last update paid for it (`_INDEX_COST_IN_SEARCHED_CHARS`: indexing a
character costs about as much as searching 500; ski rental, so indexing never costs more
than the searches it replaces): a run that observes between every few calls keeps
searching (nothing is indexed per observation), and a history checked many times (batch
checks, long runs, several flow fields) gets the index.
Brought up to date, it adds new observations only; windows of text dropped by the bound
stay (more "maybe"s) until they outnumber the kept ones, then it is rebuilt from the kept
texts.

Lost text fails closed: when text carrying a label was cut to the bound or dropped for
newer text (here, or by the store: `RunEvent.text_lost`), or an output had parts that are
not text (images, files: `text.read_output`), a value not found in the kept
text may still have come from the lost part, so `tainted` raises `TaintUnknown` for it
instead of answering "no" (the rule's condition is an error: DESIGN.md 2.2 decides it;
a deny or approval rule applies, an allow rule does not). Found values, and values
shorter than ``min_length``, are answered as before.

A state is extended in place under its lock (append-only); readers see the
``labels``/``calls`` tuples swapped whole.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from .store import RunEvent
from .text import compact, normalize, value_texts

__all__ = ["MAX_TEXT_BYTES", "RunState", "TaintMatch", "TaintUnknown"]

#: Text kept per run (UTF-8 bytes of the extracted text); older outputs are dropped first.
MAX_TEXT_BYTES = 1 << 20


class TaintUnknown(Exception):
    """Whether a value is tainted cannot be told: it is not in the kept text, and text
    carrying one of the labels asked for was lost (cut or dropped at the bound)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TaintMatch:
    """Where a value was found: the observation, its labels, and an excerpt."""

    seq: int
    tool: str
    tool_call_id: str | None
    labels: frozenset[str]
    value: str
    excerpt: str


class _Observation:
    __slots__ = ("event", "flat", "norm", "size")

    def __init__(self, event: RunEvent, norm: str, size: int) -> None:
        self.event = event
        self.norm: str | None = norm  # normalized text; None once dropped by the bound
        self.flat: str | None = norm.replace(" ", "")  # what lookups search (no whitespace)
        self.size = size


_MEMO_LIMIT = 4096  # distinct (value, labels) answers kept per state
_SEP = "\x00"  # never inside a normalized value (`tainted` checks), so never spans two texts
#: The sparse index: the hashes of the K-character windows of each observation's text
#: (without whitespace) that start at multiples of S within that text. A value of at
#: least K + S - 1 characters that occurs in the text contains one such window whole,
#: at one of its own offsets 0 .. S-1, so a value none of whose S windows is indexed
#: does not occur; any other value is searched for as before (answers never change).
_K = 8
_S = 8
_INDEXED_LENGTH = _K + _S - 1
_PROBES = tuple(slice(j, j + _K) for j in range(_S))
_MIN_INDEXED_HAY = 16384  # shorter haystacks are searched directly (as fast as probing)
_SLOTS_PER_WINDOW = 16  # one byte each: ~1.4% of absent windows look present (2 slots)
#: Indexing a character costs about as much as searching this many (measured: 200 KB
#: indexed in ~31 ms, searched in ~54 us). A label's index is built or brought up to
#: date only once the lookups it would have answered searched that many characters per
#: character it must index (ski rental: indexing never costs more than the searches it
#: replaces), so a run that observes between every few calls keeps searching, and a
#: history checked many times (batch checks, long runs, many flow fields) gets the index.
_INDEX_COST_IN_SEARCHED_CHARS = 500
_HIGH = (32).__rrshift__  # h -> h >> 32: the second slot of a window's hash


def _windows(text: str) -> list[int]:
    """Hashes of the windows of ``text`` the index keeps (one C-level pass)."""
    return list(map(hash, map(text.__getitem__, map(slice, range(0, len(text) - _K + 1, _S), range(_K, len(text) + 1, _S)))))  # fmt: skip


class _Index:
    """One label's windows, as a Bloom filter of one byte per slot (two slots per
    window, set and read by C-level map passes: no Python loop per window). It may
    hold windows of texts dropped since (a superset only makes more values searched
    for); rebuilt when those outnumber the kept ones or it is over its capacity."""

    __slots__ = ("capacity", "chars", "count", "mask", "slots", "upto")

    def __init__(self, capacity: int) -> None:
        size = 1 << max(12, (capacity * _SLOTS_PER_WINDOW - 1).bit_length())
        self.slots = bytearray(size)
        self.mask = size - 1
        self.capacity = size // _SLOTS_PER_WINDOW  # windows it holds at its error rate
        self.count = 0  # windows added
        self.chars = 0  # characters of the texts added
        self.upto = 0  # observations (positions in RunState._obs) already indexed

    def add(self, text: str) -> None:
        hashes = _windows(text)
        self.count += len(hashes)
        self.chars += len(text) + 1  # and its NUL separator in the haystack
        put, at = self.slots.__setitem__, self.mask.__and__
        deque(map(put, map(at, hashes), repeat(1)), maxlen=0)
        deque(map(put, map(at, map(_HIGH, hashes)), repeat(1)), maxlen=0)

    def may_hold_any(self, hashes: list[int]) -> bool:
        """False only if none of these window hashes was added (no false negatives)."""
        slots, mask = self.slots, self.mask
        for h in hashes:  # noqa: SIM110  (a plain loop: cheaper than any() over a generator)
            if slots[h & mask] and slots[h >> 32 & mask]:
                return True
        return False


class RunState:
    """One run's history as flow rules see it (see the module docstring)."""

    __slots__ = (
        "_hay",
        "_hay_from",
        "_hay_upto",
        "_index",
        "_kept_from",
        "_lock",
        "_lost",
        "_memo",
        "_obs",
        "_searched",
        "_text_bytes",
        "calls",
        "fields",
        "head",
        "label_set",
        "labels",
    )

    def __init__(self, events: Iterable[RunEvent] = ()) -> None:
        self._lock = threading.Lock()
        self._obs: list[_Observation] = []
        #: label -> the NUL-joined texts of _obs[_hay_from:_hay_upto] carrying it
        self._hay: dict[str, str] = {}
        self._hay_from = 0
        self._hay_upto = 0
        self._searched: dict[str, int] = {}  # label -> chars searched since its index was current
        self._memo: dict[tuple[str, frozenset[str]], tuple[bool, int]] = {}
        self._index: dict[str, _Index] = {}  # label -> its sparse index (built on demand)
        self._text_bytes = 0
        self._kept_from = 0  # observations before this one have had their text dropped
        #: labels some of whose text is not kept (cut or dropped): "not found" is unknown
        self._lost: frozenset[str] = frozenset()
        self.head = 0
        self.labels: tuple[str, ...] = ()
        self.label_set: frozenset[str] = frozenset()
        self.calls: tuple[Mapping[str, Any], ...] = ()
        #: what `run.*` paths read: {"labels": [...], "calls": [{tool, args, effect}, ...]}
        self.fields: Mapping[str, Any] = {"labels": (), "calls": ()}
        self.extend(events)

    # --- building ---------------------------------------------------------------------

    def extend(self, events: Iterable[RunEvent]) -> None:
        """Add events (oldest first) with ``seq`` greater than `head`; others are skipped."""
        with self._lock:
            labels = set(self.labels)
            calls = list(self.calls)
            grew = False
            for event in events:
                if event.seq and event.seq <= self.head:
                    continue
                self.head = event.seq or self.head + 1
                labels.update(event.labels)
                if not event.tool.startswith("@"):
                    calls.append({"tool": event.tool, "args": event.args, "effect": event.effect})
                if event.labels and event.text_lost:  # cut or blanked by the store
                    self._lose(event.labels)
                if event.labels and event.text:
                    self._add_text(event)
                    grew = True
            if grew:  # readers holding the old memo finish with a consistent view
                self._memo = {}
            self.label_set = frozenset(labels)
            self.labels = tuple(sorted(labels))
            self.calls = tuple(calls)
            self.fields = {"labels": self.labels, "calls": self.calls}

    def _add_text(self, event: RunEvent) -> None:
        text = event.text
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TEXT_BYTES:  # one output alone over the bound: keep its beginning
            text = text.encode("utf-8", "surrogatepass")[:MAX_TEXT_BYTES].decode("utf-8", "ignore")
            size = len(text.encode("utf-8", "surrogatepass"))
            self._lose(event.labels)
        self._obs.append(_Observation(event, normalize(text), size))
        self._text_bytes += size
        while self._text_bytes > MAX_TEXT_BYTES:  # drop the oldest text first
            old = self._obs[self._kept_from]
            self._kept_from += 1
            old.norm = old.flat = None
            self._text_bytes -= old.size
            old.size = 0
            self._lose(old.event.labels)

    def _lose(self, labels: frozenset[str]) -> None:
        if not labels <= self._lost:
            self._lost = self._lost | labels

    def _haystacks(self) -> dict[str, str]:
        """Per label, the kept texts joined by NUL: extended with new observations only
        (one C-level concatenation each); rebuilt from the kept texts when the bound
        dropped some."""
        if self._hay_upto == len(self._obs):
            return self._hay
        with self._lock:
            obs = self._obs
            if self._hay_upto != len(obs):
                if self._hay_from != self._kept_from:  # text was dropped: start again
                    start, hay = self._kept_from, {}
                else:
                    start, hay = self._hay_upto, dict(self._hay)
                parts: dict[str, list[str]] = {}
                for o in obs[start:]:
                    if o.flat:
                        for label in o.event.labels:
                            parts.setdefault(label, []).append(o.flat)
                for label, texts in parts.items():
                    old = hay.get(label)
                    hay[label] = _SEP.join(texts if old is None else [old, *texts])
                self._hay = hay  # published before the mark that says it is current
                self._hay_from = self._kept_from
                self._hay_upto = len(obs)
            return self._hay

    # --- reading ----------------------------------------------------------------------

    @property
    def text_bytes(self) -> int:
        """Bytes of observed text currently kept (at most `MAX_TEXT_BYTES`)."""
        return self._text_bytes

    @property
    def lost_labels(self) -> frozenset[str]:
        """Labels some of whose observed text is no longer kept (cut or dropped)."""
        return self._lost

    def tainted(self, value: Any, labels: frozenset[str], min_length: int) -> bool:
        """True if any leaf of ``value`` (normalized, at least ``min_length`` long) occurs
        in the text of one observation carrying one of ``labels``; `TaintUnknown` if no
        leaf does but one may be in lost text (three-valued: a found leaf wins)."""
        if type(value) is str:
            return self.tainted_text(value, labels, min_length)
        unknown: TaintUnknown | None = None
        for text in value_texts(value):
            try:
                if self.tainted_text(text, labels, min_length):
                    return True
            except TaintUnknown as exc:
                unknown = exc
        if unknown is not None:
            raise unknown
        return False

    def tainted_text(self, text: str, labels: frozenset[str], min_length: int) -> bool:
        """`tainted` for one string (the common case, one frame: flow rules' hot path)."""
        memo = self._memo
        key = (text, labels)
        hit = memo.get(key)
        if hit is None:
            norm = compact(text)
            if not norm:
                found = False
            elif _SEP in norm:  # cannot occur within one normalized text, only across two
                found = any(norm in obs.flat for obs in self._live(labels) if obs.flat)
            else:
                hay = self._haystacks()
                probes: list[int] | None = None
                found = False
                for label in labels:
                    stack = hay.get(label)
                    if stack is None:
                        continue
                    if len(norm) >= _INDEXED_LENGTH and len(stack) >= _MIN_INDEXED_HAY:
                        index = self._current_index(label, len(stack))
                        if index is not None:
                            if probes is None:
                                probes = list(map(hash, map(norm.__getitem__, _PROBES)))
                            if not index.may_hold_any(probes):
                                continue  # none of its windows is indexed: it does not occur
                    if norm in stack:
                        found = True
                        break
            hit = (found, len(norm))
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = hit
        if hit[0]:
            return hit[1] >= min_length
        if hit[1] < min_length or self._lost.isdisjoint(labels):
            return False
        lost = ", ".join(repr(label) for label in sorted(self._lost & labels))
        raise TaintUnknown(
            f"text labelled {lost} is no longer all kept (cut or dropped at the run's "
            f"{MAX_TEXT_BYTES >> 20} MiB bound) or was not all text (an image, a file); the "
            "value is not in what is kept, so whether it came from that text cannot be told "
            "(failing closed)"
        )

    def _current_index(self, label: str, hay_length: int) -> _Index | None:
        """The index of ``label`` if it covers every observation, else None (search):
        brought up to date once the searches since its last update paid for it."""
        index = self._index.get(label)
        if index is not None and index.upto >= len(self._obs):
            return index
        unindexed = hay_length - (index.chars if index is not None else 0)
        searched = self._searched.get(label, 0) + hay_length  # racy: only delays indexing
        if searched < _INDEX_COST_IN_SEARCHED_CHARS * max(unindexed, 1):
            self._searched[label] = searched
            return None
        self._searched[label] = 0
        return self._indexed(label, self._haystacks().get(label, ""))

    def _indexed(self, label: str, hay: str) -> _Index:
        """The index of ``label``, covering at least the texts in ``hay`` (a haystack
        of this state; the index may cover later texts too: a superset)."""
        index = self._index.get(label)
        if index is not None and index.upto >= len(self._obs):
            return index
        with self._lock:
            index = self._index.get(label)
            obs = self._obs
            need = len(hay) // _S + 64  # about the windows of the kept texts
            if index is None or index.count > min(2 * need, index.capacity):
                # new, mostly dropped text, or full: start from the kept texts
                index = _Index(2 * need)
                index.upto = self._kept_from
            for o in obs[index.upto :]:
                if o.flat and label in o.event.labels:
                    index.add(o.flat)
            index.upto = len(obs)
            self._index[label] = index
            return index

    def _live(self, labels: frozenset[str]) -> Iterable[_Observation]:
        for obs in reversed(self._obs[self._kept_from :]):  # newest first
            if obs.norm is not None and not labels.isdisjoint(obs.event.labels):
                yield obs

    def matches(
        self, value: Any, labels: frozenset[str], min_length: int
    ) -> tuple[TaintMatch, ...]:
        """Every observation that taints a leaf of ``value`` (for `veto explain`)."""
        out: list[TaintMatch] = []
        for text in value_texts(value):
            norm = compact(text)
            if len(norm) < min_length or not norm:
                continue
            for obs in self._live(labels):
                assert obs.norm is not None
                assert obs.flat is not None
                found_at = obs.flat.find(norm)
                if found_at < 0:
                    continue
                at, stop = _spaced_span(obs.norm, found_at, len(norm))
                start, end = max(0, at - 40), min(len(obs.norm), stop + 40)
                excerpt = (
                    ("…" if start else "")
                    + obs.norm[start:end]
                    + ("…" if end < len(obs.norm) else "")
                )
                out.append(
                    TaintMatch(
                        seq=obs.event.seq, tool=obs.event.tool, tool_call_id=obs.event.tool_call_id,
                        labels=obs.event.labels, value=text, excerpt=excerpt,
                    )
                )  # fmt: skip
        return tuple(out)


def _spaced_span(spaced: str, at: int, length: int) -> tuple[int, int]:
    """Where the ``length`` characters found at ``at`` in ``spaced`` without its spaces
    are in ``spaced`` itself: ``(start, end)`` (for `veto explain`'s excerpt)."""
    seen = 0
    start = end = len(spaced)
    for i, ch in enumerate(spaced):
        if ch == " ":
            continue
        if seen == at:
            start = i
        seen += 1
        if seen == at + length:
            end = i + 1
            break
    return start, end
