"""The state of one run, built from its `RunEvent`s, with a fast taint lookup (2.7).

A `RunState` is what flow rules read: ``labels`` (every label acquired so far, kept
even when an output's text was dropped), ``calls`` (earlier calls, oldest first, each
``{tool, args, effect}``; pseudo-tool observations are not calls) and the normalized
text of each labelled observation, at most `MAX_TEXT_BYTES` per run (the oldest
outputs' text is dropped first).

Taint lookup (`tainted`): a value is tainted by a label when its normalized text
occurs inside the normalized text of ONE observation carrying that label. Per label,
the sets of every 4-byte and every 8-byte window of its observations' UTF-8 text (as
integers: built in C by shifted ``memoryview.cast``) answer most lookups with a few
set probes: a value with a window no labelled output has is not tainted (values of
8 bytes or more are probed with 8-byte windows, which ordinary words rarely share). Otherwise the
label's observations are searched with ``in``, newest first. The index is built
lazily, on the first lookup after an observation, so `observe` stays cheap.

A state is extended in place under its lock (append-only); readers see the
``labels``/``calls`` tuples swapped whole.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .store import RunEvent
from .text import normalize, value_texts

__all__ = ["MAX_TEXT_BYTES", "RunState", "TaintMatch"]

#: Text kept per run (UTF-8 bytes of the extracted text); older outputs are dropped first.
MAX_TEXT_BYTES = 1 << 20
_GRAM = 4
_ORDER = sys.byteorder  # memoryview.cast("I") reads native-endian 4-byte windows
_PROBES = 8  # 4-grams of a value looked up in the index (spread over the value)


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
    __slots__ = ("event", "norm", "size", "text")

    def __init__(self, event: RunEvent, text: str, size: int) -> None:
        self.event = event
        self.text: str | None = text  # raw, until indexed (then None)
        self.norm: str | None = None  # normalized, once indexed; None when dropped
        self.size = size


class RunState:
    """One run's history as flow rules see it (see the module docstring)."""

    __slots__ = (
        "_grams",
        "_grams8",
        "_indexed",
        "_kept_from",
        "_label_bits",
        "_lock",
        "_obs",
        "_text_bytes",
        "calls",
        "fields",
        "head",
        "labels",
    )

    def __init__(self, events: Iterable[RunEvent] = ()) -> None:
        self._lock = threading.Lock()
        self._obs: list[_Observation] = []
        self._grams: dict[str, set[int]] = {}  # label -> 4-byte windows of its texts
        self._grams8: dict[str, set[int]] = {}  # label -> 8-byte windows of its texts
        self._indexed = 0  # observations [0, _indexed) are in _grams
        self._label_bits: dict[str, int] = {}
        self._text_bytes = 0
        self._kept_from = 0  # observations before this one have had their text dropped
        self.head = 0
        self.labels: tuple[str, ...] = ()
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
            for event in events:
                if event.seq and event.seq <= self.head:
                    continue
                self.head = event.seq or self.head + 1
                labels.update(event.labels)
                if not event.tool.startswith("@"):
                    calls.append({"tool": event.tool, "args": event.args, "effect": event.effect})
                if event.labels and event.text:
                    self._add_text(event)
            self.labels = tuple(sorted(labels))
            self.calls = tuple(calls)
            self.fields = {"labels": self.labels, "calls": self.calls}

    def _add_text(self, event: RunEvent) -> None:
        text = event.text
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TEXT_BYTES:  # one output alone over the bound: keep its beginning
            text = text.encode("utf-8", "surrogatepass")[:MAX_TEXT_BYTES].decode("utf-8", "ignore")
            size = len(text.encode("utf-8", "surrogatepass"))
        bit = 1 << len(self._obs)
        self._obs.append(_Observation(event, text, size))
        for label in event.labels:
            self._label_bits[label] = self._label_bits.get(label, 0) | bit
        self._text_bytes += size
        while self._text_bytes > MAX_TEXT_BYTES:  # drop the oldest text first
            old = self._obs[self._kept_from]
            self._kept_from += 1
            old.norm = old.text = None
            self._text_bytes -= old.size
            old.size = 0

    def _index(self) -> None:
        """Index the observations added since the last lookup (under the lock)."""
        for i in range(self._indexed, len(self._obs)):
            obs = self._obs[i]
            if obs.text is None:  # dropped before it was ever read
                continue
            norm = obs.norm = normalize(obs.text)
            obs.text = None
            data = norm.encode("utf-8", "surrogatepass")
            for index, windows in (
                (self._grams, _windows(data, 4)),
                (self._grams8, _windows(data, 8)),
            ):
                for label in obs.event.labels:
                    found = index.get(label)
                    if found is None:
                        index[label] = set(windows)
                    else:
                        found |= windows
        self._indexed = len(self._obs)

    # --- reading ----------------------------------------------------------------------

    @property
    def text_bytes(self) -> int:
        """Bytes of observed text currently kept (at most `MAX_TEXT_BYTES`)."""
        return self._text_bytes

    def _candidates(self, norm: str, labels: frozenset[str]) -> int:
        """Bitmask of observations carrying one of ``labels`` that may contain ``norm``:
        those of the labels whose windows include a spread of the value's windows."""
        data = norm.encode("utf-8", "surrogatepass")
        size = 8 if len(data) >= 8 else _GRAM
        grams = self._grams8 if size == 8 else self._grams
        if len(labels) == 1:  # the common case, in as few steps as possible
            (label,) = labels
            windows = grams.get(label)
            if windows is None:
                return 0
            last = len(data) - size
            if last >= 0 and (
                int.from_bytes(data[:size], _ORDER) not in windows
                or int.from_bytes(data[last:], _ORDER) not in windows
            ):
                return 0
            step = max(1, last // (_PROBES - 1))
            for j in range(step, last, step):
                if int.from_bytes(data[j : j + size], _ORDER) not in windows:
                    return 0
            return self._label_bits.get(label, 0)
        live = [grams[label] for label in labels if label in grams]
        if not live:
            return 0
        last = len(data) - size
        if last >= 0:  # else shorter than a window (min_length under 4): every output
            step = max(1, last // (_PROBES - 1)) if last > 0 else 1
            for j in (0, last, *range(step, last, step)):
                probe = int.from_bytes(data[j : j + size], _ORDER)
                live = [w for w in live if probe in w]
                if not live:  # the common case: a window no labelled output has
                    return 0
        mask = 0
        for label in labels:
            if label in grams and any(w is grams[label] for w in live):
                mask |= self._label_bits.get(label, 0)
        return mask

    def tainted(self, value: Any, labels: frozenset[str], min_length: int) -> bool:
        """True if any leaf of ``value`` (normalized, at least ``min_length`` long) occurs
        in the text of one observation carrying one of ``labels``."""
        if self._indexed < len(self._obs):
            with self._lock:
                self._index()
        if type(value) is str:
            norm = normalize(value)
            return len(norm) >= min_length and norm != "" and self._contains(norm, labels)
        for text in value_texts(value):
            norm = normalize(text)
            if len(norm) >= min_length and norm and self._contains(norm, labels):
                return True
        return False

    def _contains(self, norm: str, labels: frozenset[str]) -> bool:
        mask = self._candidates(norm, labels)
        obs = self._obs
        while mask:  # newest first: the likeliest source of a value about to be used
            i = mask.bit_length() - 1
            mask ^= 1 << i
            text = obs[i].norm
            if text is not None and norm in text:
                return True
        return False

    def _find(self, norm: str, labels: frozenset[str]) -> list[_Observation]:
        mask = self._candidates(norm, labels)
        found: list[_Observation] = []
        while mask:
            i = mask.bit_length() - 1
            mask ^= 1 << i
            obs = self._obs[i]
            if obs.norm is not None and norm in obs.norm:
                found.append(obs)
        return found

    def matches(
        self, value: Any, labels: frozenset[str], min_length: int
    ) -> tuple[TaintMatch, ...]:
        """Every observation that taints a leaf of ``value`` (for `veto explain`)."""
        out: list[TaintMatch] = []
        for text in value_texts(value):
            norm = normalize(text)
            if len(norm) < min_length or not norm:
                continue
            with self._lock:
                self._index()
                found = self._find(norm, labels)
            for obs in found:
                assert obs.norm is not None
                at = obs.norm.find(norm)
                start, end = max(0, at - 40), min(len(obs.norm), at + len(norm) + 40)
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


def _windows(data: bytes, size: int) -> set[int]:
    """Every ``size``-byte window (4 or 8) of ``data`` as an integer (native byte
    order, as `int.from_bytes` reads a probe), built in C."""
    out: set[int] = set()
    view = memoryview(data)
    for k in range(size):
        end = k + (len(data) - k) // size * size
        if end > k:
            part = view[k:end]
            out.update((part.cast("I") if size == 4 else part.cast("Q")).tolist())
    return out
