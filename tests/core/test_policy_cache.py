"""The validated-policy cache (policy/cache.py) and the records it stores (records.py).

A cache hit must give exactly what validating the file gives, and nothing in the
cache directory may ever change what a policy says: a tampered, forged, foreign or
stale entry is ignored and the file is validated again.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from veto_core import Effect, Principal, ToolCall, Veto
from veto_core.policy import cache as cache_module
from veto_core.policy import loader, records
from veto_core.policy.cache import CACHE_KEY_NAME, ENV_POLICY_CACHE, PolicyCache, using
from veto_core.policy.errors import PolicyError
from veto_core.policy.loader import LoadedPolicy, load_bundle, load_policy_file

REPO = Path(__file__).resolve().parents[2]

POLICY = """\
version: 1
name: cached
lists:
  safe: [a.example, b.example]
rules:
  - id: no-mail
    effect: deny
    tools: send_email
    if: {field: args.to, email_domain_in: {list: safe}}
  - id: read
    effect: allow
    tools: [read_file]
    when: {env: prod}
    if: {field: args.path, starts_with: /srv/}
"""

BASE = """\
version: 1
name: base
rules:
  - id: base-deny
    effect: deny
    tools: [rm]
"""

APP = """\
version: 1
name: app
extends: [./base.yaml]
rules:
  - id: app-allow
    effect: allow
    tools: [ls]
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PolicyCache:
    """The cache as the CLI opens it, in a temporary home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(ENV_POLICY_CACHE, raising=False)
    found = PolicyCache.from_env()
    assert found is not None
    assert found.directory == home / ".cache" / "veto" / "policies"
    return found


class Validations:
    """Counts how often pydantic validated a file (a cache hit does not)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = loader._validate_model

        def counting(doc: Any) -> Any:
            self.count += 1
            return real(doc)

        monkeypatch.setattr(loader, "_validate_model", counting)


def _load(path: Path, cache: PolicyCache | None, tenant: str | None = None) -> LoadedPolicy:
    with using(cache):
        return load_bundle(path, tenant) if path.is_dir() else load_policy_file(path)


def _entries(cache: PolicyCache) -> list[Path]:
    return sorted(cache.directory.glob("*.json")) if cache.directory.is_dir() else []


def _same(a: LoadedPolicy, b: LoadedPolicy) -> None:
    assert a.revision == b.revision and a.canonical == b.canonical
    assert a.model == b.model
    assert [(s.doc.file, s.index) for s in a.rule_sources] == [
        (s.doc.file, s.index) for s in b.rule_sources
    ]


@pytest.mark.parametrize(
    "name", ["demo.yaml", "support-agent.yaml", "coding-agent.yaml", "base.yaml"]
)
def test_a_hit_loads_exactly_what_validation_gives(
    name: str, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = REPO / "policies" / name
    validations = Validations(monkeypatch)
    plain = _load(path, None)
    cold = _load(path, cache)
    after_cold = validations.count
    hot = _load(path, cache)
    assert validations.count == after_cold  # every file came from the cache
    assert _entries(cache)
    _same(plain, cold)
    _same(plain, hot)
    # and the compiled policies decide alike
    call = ToolCall(tool="read_file", args={"path": "/etc/passwd"}, principal=Principal(agent="a"))
    assert Veto(hot).decide(call) == Veto(plain).decide(call)


def test_a_tampered_entry_is_ignored_and_rewritten(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    _load(path, cache)
    (entry,) = _entries(cache)
    raw = entry.read_bytes()
    assert b'"deny"' in raw
    entry.write_bytes(raw.replace(b'"deny"', b'"allow"'))  # widen, keep the old MAC
    validations = Validations(monkeypatch)
    loaded = _load(path, cache)
    assert validations.count == 1  # validated again: the entry was not trusted
    assert loaded.model.rules[0].effect == "deny"
    assert entry.read_bytes() == raw  # and rewritten with the validated form
    assert _load(path, cache).model.rules[0].effect == "deny"
    assert validations.count == 1


def test_an_entry_signed_with_another_key_is_ignored(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    _load(path, cache)
    (entry,) = _entries(cache)
    _, _, payload = entry.read_bytes().partition(b"\n")
    forged_payload = payload.replace(b'"deny"', b'"allow"')
    forger = PolicyCache(cache.directory, b"\x01" * 32, cache._fingerprint)
    entry.write_bytes(forger._mac(forged_payload).encode() + b"\n" + forged_payload)
    validations = Validations(monkeypatch)
    assert _load(path, cache).model.rules[0].effect == "deny"
    assert validations.count == 1


def test_an_entry_moved_to_another_files_name_is_ignored(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validly signed entry of one text (an allow-everything policy) put where
    another text's entry goes does not stand in for it."""
    lax, strict = tmp_path / "lax.yaml", tmp_path / "strict.yaml"
    lax.write_text("version: 1\nname: lax\ndefault: allow\n")
    strict.write_text("version: 1\nname: strict\n")
    _load(lax, cache)
    (lax_entry,) = _entries(cache)
    strict_doc = loader.read_yaml_file(strict)
    lax_entry.rename(cache._entry(strict_doc.sha256))
    validations = Validations(monkeypatch)
    loaded = _load(strict, cache)
    assert validations.count == 1
    assert loaded.model.default == "deny" and loaded.model.name == "strict"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"not a mac\n{}", b"\x00\xff" * 40, b"0" * 64 + b"\n[1, 2"],
)
def test_a_corrupt_entry_is_ignored(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch, garbage: bytes
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    _load(path, cache)
    (entry,) = _entries(cache)
    entry.write_bytes(garbage)
    validations = Validations(monkeypatch)
    assert _load(path, cache).canonical == _load(path, None).canonical
    assert validations.count == 2  # the corrupt entry, then the uncached load


def test_a_changed_file_is_validated_again(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    first = _load(path, cache)
    path.write_text(POLICY.replace("effect: deny", "effect: require_approval"))
    validations = Validations(monkeypatch)
    second = _load(path, cache)
    assert validations.count == 1
    assert second.model.rules[0].effect == "require_approval"
    assert second.revision != first.revision
    # an invalid edit is reported exactly as without the cache, and never cached
    path.write_text(POLICY.replace("effect: deny", "effect: maybe"))
    with pytest.raises(PolicyError) as cached_error:
        _load(path, cache)
    with pytest.raises(PolicyError) as plain_error:
        _load(path, None)
    assert str(cached_error.value) == str(plain_error.value)
    assert "expected 'allow', 'deny' or 'require_approval', got 'maybe'" in str(cached_error.value)
    assert len(_entries(cache)) == 2


def test_a_changed_extended_file_is_validated_again(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    app = tmp_path / "app.yaml"
    app.write_text(APP)
    assert {r.id for r in _load(app, cache).model.rules} == {"base-deny", "app-allow"}
    (tmp_path / "base.yaml").write_text(BASE.replace("base-deny", "base-deny-2"))
    validations = Validations(monkeypatch)
    loaded = _load(app, cache)
    assert validations.count == 1  # only the base changed
    assert {r.id for r in loaded.model.rules} == {"base-deny-2", "app-allow"}
    # a base edit that clashes with the extending file is still refused
    (tmp_path / "base.yaml").write_text(BASE.replace("base-deny", "app-allow"))
    with pytest.raises(PolicyError, match="duplicate rule id 'app-allow'"):
        _load(app, cache)


def test_a_changed_overlay_is_validated_again_and_still_may_not_widen(
    tmp_path: Path, cache: PolicyCache
) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "tenants").mkdir()
    overlay = tmp_path / "tenants" / "acme.yaml"
    overlay.write_text(
        "version: 1\nname: acme\nrules:\n  - {id: acme-deny, effect: deny, tools: [ls]}\n"
    )
    veto = Veto(_load(tmp_path, cache, "acme"), tenant="acme")
    ls = ToolCall(tool="ls", args={}, principal=Principal(agent="a"))
    assert veto.decide(ls).effect is Effect.DENY
    overlay.write_text(
        "version: 1\nname: acme\nrules:\n  - {id: acme-allow, effect: allow, tools: [ls]}\n"
    )
    with pytest.raises(PolicyError, match="an overlay may only add deny or require_approval"):
        _load(tmp_path, cache, "acme")
    with pytest.raises(PolicyError, match="an overlay may only add deny or require_approval"):
        _load(tmp_path, cache, "acme")  # its validated form is cached; the check still runs


def test_off_or_an_unsafe_key_means_no_cache(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_POLICY_CACHE, "off")
    assert PolicyCache.from_env() is None
    monkeypatch.setenv(ENV_POLICY_CACHE, str(tmp_path / "elsewhere"))
    moved = PolicyCache.from_env()
    assert moved is not None and moved.directory == tmp_path / "elsewhere"
    key = Path(os.environ["HOME"]) / ".veto" / CACHE_KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)  # others could read it, so they could sign entries
    assert PolicyCache.from_env() is None
    key.chmod(0o600)
    key.write_text("short\n")
    assert PolicyCache.from_env() is None


def test_the_cli_uses_the_cache_and_a_hit_says_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from veto_core.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(ENV_POLICY_CACHE, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    policy = str(REPO / "policies" / "support-agent.yaml")
    runs = [
        CliRunner().invoke(main, args)
        for args in (["lint", policy], ["check", policy, "--tool", "x", "--json"])
        for _ in range(2)  # cold, then from the cache
    ]
    assert len(list((tmp_path / ".cache" / "veto" / "policies").glob("*.json"))) == 2  # + base
    assert runs[0].output == runs[1].output and "0 finding(s)" in runs[0].output
    assert runs[2].output == runs[3].output and runs[2].exit_code == runs[3].exit_code == 1


def test_the_oldest_entries_go_beyond_the_limit(
    tmp_path: Path, cache: PolicyCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "MAX_ENTRIES", 3)
    path = tmp_path / "p.yaml"
    for i in range(5):
        path.write_text(f"version: 1\nname: v{i}\n")
        _load(path, cache)
        for n, entry in enumerate(sorted(_entries(cache), key=lambda p: p.stat().st_mtime)):
            os.utime(entry, (n, n))  # strictly ordered, whatever the clock's resolution
    assert len(_entries(cache)) == 3
    path.write_text("version: 1\nname: v4\n")
    validations = Validations(monkeypatch)
    _load(path, cache)
    assert validations.count == 0  # the newest is kept


# --- records ---------------------------------------------------------------------------


ODD_CONDITION_DATA: Any = {
    "field": "args.x",
    "equals": {1: "int key", 2.5: "float key", None: "null key", "s": [True, -0.0, 10**30]},
    "in": [math.inf, -math.inf, "x", {"list": "n"}, [], {}],
}


def test_records_round_trip_through_the_cache_encoding() -> None:
    model = loader.read_yaml_text(POLICY, file="p.yaml")
    loaded = loader._validate_model(model)[0]
    value = records.replace(
        loaded,
        rules=[records.replace(loaded.rules[0], if_=ODD_CONDITION_DATA), *loaded.rules[1:]],
    )
    encoded = json.loads(json.dumps(records.encode(value)))
    decoded = records.decode(encoded)
    assert decoded == value
    assert records.json_form(decoded) == records.json_form(value)
    odd = decoded.rules[0].if_
    assert set(odd["equals"]) == {1, 2.5, None, "s"}
    assert math.copysign(1, odd["equals"]["s"][1]) == -1 and odd["equals"]["s"][2] == 10**30
    with pytest.raises(TypeError):
        records.encode({"when": (1, 2)})  # never in a validated policy: not cached
    for bad in ({"x": 1}, {"d": [[[1], 2]]}, {"r": 1, "a": {}, "j": None, "v": {}}):
        with pytest.raises(ValueError):
            records.decode(bad)


def test_records_are_immutable_values() -> None:
    loaded = loader._validate_model(loader.read_yaml_text(POLICY, file="p.yaml"))[0]
    rule = loaded.rules[0]
    with pytest.raises(AttributeError):
        rule.effect = "allow"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="RuleModel has no field 'efect'"):
        rule.efect  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(TypeError):
        records.replace(rule, efect="allow")
    assert records.replace(rule, effect="deny") == rule
    assert records.replace(rule, effect="allow") != rule
    for copied in (copy.copy(loaded), copy.deepcopy(loaded), pickle.loads(pickle.dumps(loaded))):
        assert copied == loaded
        assert records.json_form(copied) == records.json_form(loaded)


def test_revisions_are_what_pydantic_dumped(tmp_path: Path) -> None:
    """The revision hash of a policy is unchanged by the move to records."""
    from veto_core.policy.schema import PolicyModel

    text = POLICY + "limits:\n  - {id: l, tools: [x], window: 30, count: true, max: 5}\n"
    doc = loader.read_yaml_text(text, file="p.yaml")
    data = dict(doc.data)
    data["rules"][0]["if"] = ODD_CONDITION_DATA | {"in": [1, "x", math.nan]}
    expected = PolicyModel.model_validate(data).model_dump(
        mode="json", by_alias=True, exclude={"extends", "tests"}
    )
    got = records.json_form(
        records.from_model(PolicyModel.model_validate(data)),
        exclude=frozenset({"extends", "tests"}),
    )
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
