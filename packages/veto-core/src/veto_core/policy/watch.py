"""Hot reload: poll the policy's files and swap in a new revision when they change.

Polling (stat every `interval` seconds) rather than inotify: it works the same on
every OS, container and network filesystem, and a policy is a handful of files.
A broken edit keeps the last good revision; the error is logged and, when the
audit store is open, recorded as a `policy_reload_failed` event.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PolicyError

if TYPE_CHECKING:
    from ..engine import Veto

__all__ = ["PolicyWatcher"]

log = logging.getLogger("veto.policy")

Stamp = tuple[tuple[str, float, int], ...]


def _stamp(files: tuple[Path, ...]) -> Stamp:
    out = []
    for path in files:
        try:
            st = path.stat()
            out.append((str(path), st.st_mtime, st.st_size))
        except OSError:
            out.append((str(path), -1.0, -1))
    return tuple(out)


class PolicyWatcher:
    def __init__(self, veto: Veto, *, interval: float = 0.5) -> None:
        self.veto = veto
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="veto-policy-watch", daemon=True)
        self._last = _stamp(veto.files())
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def check(self) -> bool:
        """Reload if any file changed; True when a new revision was swapped in."""
        stamp = _stamp(self.veto.files())
        if stamp == self._last:
            return False
        self._last = stamp
        before = self.veto.policy_revision
        try:
            after = self.veto.reload()
        except PolicyError as exc:
            self.failures += 1
            self.last_error = str(exc)
            log.error("policy reload failed; keeping revision %s:\n%s", before[:12], exc)
            self._record_failure(before, str(exc))
            return False
        except Exception as exc:  # never let the watcher die: keep the last good policy
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("policy reload failed; keeping revision %s", before[:12])
            return False
        self._last = _stamp(self.veto.files())  # extends/overlays may have changed the set
        self.last_error = None
        if after != before:
            self.reloads += 1
            log.info("policy reloaded: %s -> %s", before[:12], after[:12])
        return after != before

    def _record_failure(self, revision: str, message: str) -> None:
        veto = self.veto
        if veto._audit is None and veto._parent is None:
            return  # don't open a store just to complain; the log has it
        try:
            veto.audit.record_event(
                tenant=veto.tenant,
                tool="(policy)",
                outcome="policy_reload_failed",
                env=veto.env,
                reasons=(message,),
                policy_name=veto.policy_name,
                policy_revision=revision,
            )
        except Exception:
            log.exception("could not record the failed policy reload")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
