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
separators into one haystack (rebuilt lazily after an observation, one C-level join),
so a lookup is one C substring search per label, and a value without NUL never spans
two observations.
Answers are memoized per state and value (cleared when the state grows), the way the
engine memoizes other pure string operators. Memory stays proportional to the kept
text (at most `MAX_TEXT_BYTES` per run, plus one haystack per label): no per-window
index, whose sets cost ~90 bytes per distinct window and seconds to build per MiB.

A state is extended in place under its lock (append-only); readers see the
``labels``/``calls`` tuples swapped whole.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .store import RunEvent
from .text import compact, normalize, value_texts

__all__ = ["MAX_TEXT_BYTES", "RunState", "TaintMatch"]

#: Text kept per run (UTF-8 bytes of the extracted text); older outputs are dropped first.
MAX_TEXT_BYTES = 1 << 20


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
    __slots__ = ("event", "norm", "size")

    def __init__(self, event: RunEvent, norm: str, size: int) -> None:
        self.event = event
        self.norm: str | None = norm  # normalized text; None once dropped by the bound
        self.size = size


_MEMO_LIMIT = 4096  # distinct (value, labels) answers kept per state
_SEP = "\x00"  # never inside a normalized value (`tainted` checks), so never spans two texts


class RunState:
    """One run's history as flow rules see it (see the module docstring)."""

    __slots__ = (
        "_hay",
        "_kept_from",
        "_lock",
        "_memo",
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
        self._hay: dict[str, str] | None = {}  # label -> NUL-joined kept texts; None: stale
        self._memo: dict[tuple[str, frozenset[str]], tuple[bool, int]] = {}
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
            grew = False
            for event in events:
                if event.seq and event.seq <= self.head:
                    continue
                self.head = event.seq or self.head + 1
                labels.update(event.labels)
                if not event.tool.startswith("@"):
                    calls.append({"tool": event.tool, "args": event.args, "effect": event.effect})
                if event.labels and event.text:
                    self._add_text(event)
                    grew = True
            if grew:  # readers holding the old haystacks/memo finish with a consistent view
                self._hay = None
                self._memo = {}
            self.labels = tuple(sorted(labels))
            self.calls = tuple(calls)
            self.fields = {"labels": self.labels, "calls": self.calls}

    def _add_text(self, event: RunEvent) -> None:
        text = event.text
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TEXT_BYTES:  # one output alone over the bound: keep its beginning
            text = text.encode("utf-8", "surrogatepass")[:MAX_TEXT_BYTES].decode("utf-8", "ignore")
            size = len(text.encode("utf-8", "surrogatepass"))
        self._obs.append(_Observation(event, normalize(text), size))
        self._text_bytes += size
        while self._text_bytes > MAX_TEXT_BYTES:  # drop the oldest text first
            old = self._obs[self._kept_from]
            self._kept_from += 1
            old.norm = None
            self._text_bytes -= old.size
            old.size = 0

    def _haystacks(self) -> dict[str, str]:
        hay = self._hay
        if hay is None:
            with self._lock:
                hay = self._hay
                if hay is None:
                    parts: dict[str, list[str]] = {}
                    for obs in self._obs[self._kept_from :]:
                        if obs.norm:
                            for label in obs.event.labels:
                                parts.setdefault(label, []).append(obs.norm.replace(" ", ""))
                    hay = self._hay = {label: _SEP.join(texts) for label, texts in parts.items()}
        return hay

    # --- reading ----------------------------------------------------------------------

    @property
    def text_bytes(self) -> int:
        """Bytes of observed text currently kept (at most `MAX_TEXT_BYTES`)."""
        return self._text_bytes

    def tainted(self, value: Any, labels: frozenset[str], min_length: int) -> bool:
        """True if any leaf of ``value`` (normalized, at least ``min_length`` long) occurs
        in the text of one observation carrying one of ``labels``."""
        if type(value) is str:
            return self._contains(value, labels, min_length)
        return any(self._contains(text, labels, min_length) for text in value_texts(value))

    def _contains(self, text: str, labels: frozenset[str], min_length: int) -> bool:
        memo = self._memo
        key = (text, labels)
        hit = memo.get(key)
        if hit is None:
            norm = compact(text)
            if not norm:
                found = False
            elif _SEP in norm:  # cannot occur within one normalized text, only across two
                found = any(
                    norm in obs.norm.replace(" ", "") for obs in self._live(labels) if obs.norm
                )
            else:
                hay = self._haystacks()
                found = any(norm in hay[label] for label in labels if label in hay)
            hit = (found, len(norm))
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = hit
        return hit[0] and hit[1] >= min_length

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
                found_at = obs.norm.replace(" ", "").find(norm)
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
