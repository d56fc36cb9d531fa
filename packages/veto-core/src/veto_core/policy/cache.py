"""The validated-policy cache: a file pydantic has validated once is not validated again.

Validating a policy means importing pydantic and building its models, which is most
of what `veto check` and `veto lint` cost at start-up (DESIGN.md 8). The validated
form of a file depends only on its text and on the code that validates it, so it is
kept, per file, under ``$XDG_CACHE_HOME/veto/policies`` (``~/.cache/veto/policies``),
named by the SHA-256 of that text and of a fingerprint of the validating code (veto's
version, the schema, loader, record and YAML modules, pydantic's version).
Changing a file, or a file it ``extends``, or an overlay, changes its name: every
file is looked up on its own and everything after validation (merging ``extends``,
overlay checks, compiling) runs on every load.

An entry is trusted only if its HMAC-SHA256, keyed by ``~/.veto/policy-cache.key``
(256 random bits, mode 0600 in the user's 0700 ``~/.veto``, next to the admin key),
matches, and only for the exact text hash and fingerprint it was written for. An
entry that is missing, corrupt, written by someone without the key, or copied from
another file is ignored: the file is validated by pydantic as if there were no cache
(and the entry rewritten). A cache that cannot be used (no home, a read-only disk,
an unsafe key file) is simply not used; it never fails a command.

``VETO_POLICY_CACHE=off`` disables it; ``VETO_POLICY_CACHE=DIR`` moves it. Only the
command line uses it (`Veto.from_file` inside ``using(...)``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

from . import records

if TYPE_CHECKING:
    from .schema import PolicyModel
    from .yamlsrc import SourceDoc

__all__ = [
    "CACHE_KEY_NAME",
    "ENV_POLICY_CACHE",
    "PolicyCache",
    "cached_validation",
    "using",
]

ENV_POLICY_CACHE = "VETO_POLICY_CACHE"
CACHE_KEY_NAME = "policy-cache.key"
#: Entries kept; the oldest go first (a run that writes one removes the excess).
MAX_ENTRIES = 1000
_OFF = frozenset({"0", "off", "false", "no"})
_FORMAT = b"veto-policy-cache-v1\n"
#: The modules whose code decides what a file validates to.
_VALIDATING_MODULES = ("schema.py", "records.py", "loader.py", "yamlsrc.py", "durations.py")

_ACTIVE: ContextVar[PolicyCache | None] = ContextVar("veto_policy_cache", default=None)


def _code_fingerprint() -> str | None:
    """SHA-256 of what validates a file; None (no cache) when it cannot be read."""
    import importlib.util

    from veto_core import __version__

    digest = hashlib.sha256(f"veto {__version__}\n".encode())
    here = Path(__file__).parent
    try:
        for name in _VALIDATING_MODULES:
            digest.update(name.encode() + b"\n" + (here / name).read_bytes())
        spec = importlib.util.find_spec("pydantic")  # found, not imported
        if spec is None or spec.origin is None:
            return None
        digest.update(b"pydantic\n" + Path(spec.origin).with_name("version.py").read_bytes())
    except (OSError, ImportError, ValueError):
        return None
    return digest.hexdigest()


def default_directory(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "veto" / "policies"


class PolicyCache:
    """Validated policy files, one HMAC-signed entry per (file text, validating code)."""

    def __init__(self, directory: Path, key: bytes, fingerprint: str) -> None:
        self.directory = directory
        self._key = key
        self._fingerprint = fingerprint

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PolicyCache | None:
        """The user's cache, or None when it is disabled or unusable."""
        from veto_core.keyfile import KeyFileError, read_private_key

        env = os.environ if env is None else env
        setting = env.get(ENV_POLICY_CACHE, "").strip()
        if setting.lower() in _OFF:
            return None
        try:
            directory = Path(setting) if setting else default_directory(env)
            key = read_private_key(
                Path.home() / ".veto" / CACHE_KEY_NAME, create=True, what="policy cache key"
            )
        except (KeyFileError, OSError, RuntimeError):  # RuntimeError: no home directory
            return None
        fingerprint = _code_fingerprint()
        return None if fingerprint is None else cls(directory, key, fingerprint)

    def _entry(self, text_sha256: str) -> Path:
        name = hashlib.sha256(f"{self._fingerprint}:{text_sha256}".encode()).hexdigest()
        return self.directory / f"{name}.json"

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, _FORMAT + payload, hashlib.sha256).hexdigest()

    def get(self, doc: SourceDoc) -> PolicyModel | None:
        """The validated form of ``doc``'s text, or None (validate it) when there is no
        entry this key signed for this very text and code."""
        try:
            raw = self._entry(doc.sha256).read_bytes()
            mac, _, payload = raw.partition(b"\n")
            if not hmac.compare_digest(mac, self._mac(payload).encode("ascii")):
                return None
            entry = json.loads(payload)
            if entry["fingerprint"] != self._fingerprint or entry["text"] != doc.sha256:
                return None
            model = records.decode(entry["policy"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None
        if not isinstance(model, records.Record):
            return None
        found: PolicyModel = model  # type: ignore[assignment]  # a record is its model
        return found

    def put(self, doc: SourceDoc, model: PolicyModel) -> None:
        """Keep ``model`` as the validated form of ``doc``'s text (best effort)."""
        try:
            payload = json.dumps(
                {
                    "fingerprint": self._fingerprint,
                    "text": doc.sha256,
                    "policy": records.encode(model),
                },
                separators=(",", ":"),
            ).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            return  # not encodable: validate it every time
        data = self._mac(payload).encode("ascii") + b"\n" + payload
        target = self._entry(doc.sha256)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(tmp, flags, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            self._prune()
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _prune(self) -> None:
        """Keep the newest ``MAX_ENTRIES`` entries (each edit of a policy adds one)."""
        entries = list(self.directory.glob("*.json"))
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda p: p.stat().st_mtime)
        for old in entries[: len(entries) - MAX_ENTRIES]:
            old.unlink(missing_ok=True)


@contextmanager
def using(cache: PolicyCache | None) -> Iterator[None]:
    """Policies loaded inside this block (in this context) use ``cache``."""
    token = _ACTIVE.set(cache)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def cached_validation(
    doc: SourceDoc, validate: Callable[[SourceDoc], tuple[PolicyModel, bool]]
) -> PolicyModel:
    """``validate(doc)`` (-> model, whether it may be kept), or the kept model of the
    same text when a policy cache is in use."""
    cache = _ACTIVE.get()
    if cache is not None:
        hit = cache.get(doc)
        if hit is not None:
            return hit
    model, keep = validate(doc)
    if cache is not None and keep:
        cache.put(doc, model)
    return model
