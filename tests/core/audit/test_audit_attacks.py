"""What ``veto audit verify`` must catch (DESIGN.md 4, "What verify must catch").

Each test plays an attacker who can read and write the audit store (SQL access,
a restored backup, the JSONL file) but not the signing key file, the pinned
public key or the witness, which live elsewhere. Every attack here passed
verification before the signing key moved out of the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import call, decision
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veto_core.audit import Checkpoint, open_audit
from veto_core.audit.cli import audit_cli
from veto_core.audit.record import compute_hash
from veto_core.audit.signing import public_key_hex
from veto_core.model import Effect

KINDS = ["sqlite", "postgresql", "jsonl"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Server stores keep their key under ~/.veto; no veto.toml of the machine leaks in.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for name in (
        "VETO_CONFIG",
        "VETO_AUDIT_SIGNING_KEY",
        "VETO_AUDIT_PUBLIC_KEY",
        "VETO_AUDIT_WITNESS",
        "VETO_DB",
    ):
        monkeypatch.delenv(name, raising=False)


class Store:
    """Raw access to one store, as an attacker with database access has it."""

    def __init__(self, kind: str, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.path = tmp / "veto.db"
            self.url = str(self.path)
        elif kind == "jsonl":
            self.path = tmp / "audit.jsonl"
            self.url = f"jsonl:///{self.path}"
        else:
            self.url = request.getfixturevalue("pg_url")
            self.schema = self.url.split("schema=")[1]

    def sql(self, stmt: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self.kind == "sqlite":
            con = sqlite3.connect(self.path)
            try:
                rows = con.execute(stmt, params).fetchall()
                con.commit()
                return rows
            finally:
                con.close()
        import psycopg

        with psycopg.connect(self.url.split("?")[0], autocommit=True) as con:
            con.execute(f'SET search_path TO "{self.schema}"')
            cur = con.execute(stmt.replace("?", "%s"), params)
            return list(cur.fetchall()) if cur.description else []

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]

    def write_lines(self, lines: list[dict[str, Any]]) -> None:
        self.path.write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in lines))

    # -- attacks ----------------------------------------------------------------

    def stored_seed(self) -> bytes | None:
        if self.kind == "jsonl":
            import base64

            seeds = [o["seed"] for o in self.lines() if o.get("type") == "signing_key"]
            return base64.b64decode(seeds[0]) if seeds else None
        rows = self.sql("SELECT seed FROM audit_signing_key")
        return bytes(rows[0][0]) if rows else None

    def update_record(self, tenant: str, seq: int, **cols: Any) -> None:
        if self.kind == "jsonl":
            lines = self.lines()
            for o in lines:
                if o.get("type") == "record" and o["tenant"] == tenant and o["seq"] == seq:
                    o.update(cols)
            self.write_lines(lines)
            return
        sets = ", ".join(f"{c} = ?" for c in cols)
        self.sql(
            f"UPDATE audit_records SET {sets} WHERE tenant = ? AND seq = ?",
            (*cols.values(), tenant, seq),
        )

    def delete_records(self, tenant: str, *, from_seq: int = 0, to_seq: int = 10**9) -> None:
        if self.kind == "jsonl":
            self.write_lines(
                [
                    o
                    for o in self.lines()
                    if not (
                        o.get("type") == "record"
                        and o["tenant"] == tenant
                        and from_seq <= o["seq"] <= to_seq
                    )
                ]
            )
            return
        self.sql(
            "DELETE FROM audit_records WHERE tenant = ? AND seq BETWEEN ? AND ?",
            (tenant, from_seq, to_seq),
        )

    def set_head(self, tenant: str, seq: int, hash_: str) -> None:
        if self.kind == "jsonl":
            return  # the head is the last record line
        self.sql(
            "UPDATE audit_chain_heads SET seq = ?, hash = ? WHERE tenant = ?", (seq, hash_, tenant)
        )

    def delete_checkpoints(self, tenant: str, *, kind: str | None = None) -> None:
        if self.kind == "jsonl":
            self.write_lines(
                [
                    o
                    for o in self.lines()
                    if not (
                        o.get("type") == "checkpoint"
                        and o["tenant"] == tenant
                        and (kind is None or o["kind"] == kind)
                    )
                ]
            )
            return
        if kind is None:
            self.sql("DELETE FROM audit_checkpoints WHERE tenant = ?", (tenant,))
        else:
            self.sql("DELETE FROM audit_checkpoints WHERE tenant = ? AND kind = ?", (tenant, kind))

    def remove_tenant(self, tenant: str) -> None:
        if self.kind == "jsonl":
            self.write_lines([o for o in self.lines() if o.get("tenant") != tenant])
            return
        for table in (
            "audit_records",
            "audit_chain_heads",
            "audit_checkpoints",
            "audit_tenant_keys",
        ):
            self.sql(f"DELETE FROM {table} WHERE tenant = ?", (tenant,))

    def edit_policy_text(self, revision: str, text: str) -> None:
        if self.kind == "jsonl":
            lines = self.lines()
            for o in lines:
                if o.get("type") == "policy" and o["revision"] == revision:
                    o["content"] = text
            self.write_lines(lines)
            return
        self.sql(
            "UPDATE audit_policy_revisions SET content = ? WHERE revision = ?", (text, revision)
        )


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return Store(request.param, tmp_path, request)


def populate(url: str, *, tenants: tuple[str, ...] = ("acme",), n: int = 6) -> None:
    """Records, written and closed by a normal process (a clean shutdown)."""
    log = open_audit(url)
    for t in tenants:
        for i in range(n):
            log.record_decision(
                call(tenant=t, args={"i": i}, tool_call_id=f"c{i}"),
                decision(Effect.DENY if i == 1 else Effect.ALLOW),
            )
    log.checkpoint()
    log.close()


def verify(url: str, *extra: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(audit_cli, ["verify", "--db", url, *extra])
    return res.exit_code, res.stdout, res.stderr


def resign(cp: Checkpoint, key: Ed25519PrivateKey, **changes: Any) -> Checkpoint:
    from veto_core.audit.record import canonical_json

    cp = dataclasses.replace(cp, public_key=public_key_hex(key), signature="", **changes)
    return dataclasses.replace(cp, signature=key.sign(canonical_json(cp.payload())).hex())


def attacker_key(store: Store) -> Ed25519PrivateKey:
    """The store's own signing seed if it keeps one, else the attacker's key."""
    seed = store.stored_seed()
    return (
        Ed25519PrivateKey.from_private_bytes(seed)
        if seed is not None
        else Ed25519PrivateKey.generate()
    )


# --------------------------------------------------------------------------- the attacks


def test_recomputed_chain_with_resigned_checkpoints_is_caught(store: Store) -> None:
    populate(store.url)
    key = attacker_key(store)
    log = open_audit(store.url)
    chain = list(log.sink.iter_chain("acme"))
    checkpoints = log.sink.checkpoints("acme")
    log.sink.close()
    prev = chain[0].record.prev_hash
    new_hash = {}
    for s in chain:  # turn the deny at seq 2 into an allow, then re-hash everything after
        r = s.record
        if r.seq == 2:
            r = dataclasses.replace(r, effect="allow", outcome="allowed")
        r = dataclasses.replace(r, prev_hash=prev)
        r = dataclasses.replace(r, hash=compute_hash(r, s.user_digest))
        store.update_record("acme", r.seq, effect=r.effect, outcome=r.outcome,
                            prev_hash=r.prev_hash, hash=r.hash)  # fmt: skip
        new_hash[r.seq] = prev = r.hash
    last = chain[-1].record.seq
    store.set_head("acme", last, new_hash[last])
    log = open_audit(store.url)
    for cp in checkpoints:
        log.sink.add_checkpoint(resign(cp, key, hash=new_hash[cp.seq]))
    log.sink.close()
    code, out, _ = verify(store.url)
    assert code == 1, out
    assert "not a pinned key (forged)" in out
    assert store.stored_seed() is None  # the signing key never lives in the audited store


def test_tombstone_signed_with_attackers_key_is_caught(store: Store) -> None:
    populate(store.url)
    key = attacker_key(store)
    log = open_audit(store.url)
    chain = list(log.sink.iter_chain("acme"))
    real = log.public_key()
    log.sink.close()
    third = chain[2].record
    store.delete_records("acme", to_seq=3)
    log = open_audit(store.url)
    forged = resign(
        Checkpoint(tenant="acme", kind="tombstone", seq=3, hash=third.hash,
                   created_at=third.ts, info={"reason": "retention"}, public_key="",
                   signature=""),
        key,
    )  # fmt: skip
    log.sink.add_checkpoint(forged)
    log.sink.close()
    code, out, _ = verify(store.url)
    assert code == 1 and "tombstone at seq 3" in out and "forged" in out, out
    # The same with the key pinned explicitly (verifying on another machine).
    code, out, _ = verify(store.url, "--public-key", real)
    assert code == 1 and "forged" in out, out


def test_last_record_deleted_and_head_rewound_is_caught_by_the_newest_checkpoint(
    store: Store,
) -> None:
    log = open_audit(store.url)
    for i in range(5):
        log.record_decision(call(args={"i": i}), decision())
    log.close()  # a clean shutdown signs the head it left
    log = open_audit(store.url)
    fourth = [s.record for s in log.sink.iter_chain("acme")][3]
    log.sink.close()
    store.delete_records("acme", from_seq=5)
    store.set_head("acme", 4, fourth.hash)
    code, out, _ = verify(store.url)
    assert code == 1 and "seq 5" in out and "missing" in out, out


def test_truncation_with_checkpoints_deleted_is_caught_by_the_witness(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = tmp_path / "elsewhere" / "witness.jsonl"
    monkeypatch.setenv("VETO_AUDIT_WITNESS", f"file://{witness}")
    populate(store.url)
    log = open_audit(store.url)
    fifth = [s.record for s in log.sink.iter_chain("acme")][4]
    log.sink.close()
    store.delete_records("acme", from_seq=6)
    store.set_head("acme", 5, fifth.hash)
    store.delete_checkpoints("acme")  # cover the tracks in the store
    code, out, err = verify(store.url)
    assert code == 1 and "a witness saw the chain at seq 6" in out, (out, err)
    # Without the witness the same store looks fine: that is what it is for.
    monkeypatch.delenv("VETO_AUDIT_WITNESS")
    code, out, err = verify(store.url)
    assert code == 0 and "no witness configured" in err


def test_removed_tenant_is_caught_by_the_signed_registry(store: Store) -> None:
    populate(store.url, tenants=("acme", "beta"))
    store.remove_tenant("beta")
    code, out, _ = verify(store.url)
    assert code == 1 and "tenant beta" in out and "tenant removed" in out, out


def test_removed_tenant_and_registry_is_caught(store: Store) -> None:
    populate(store.url, tenants=("acme", "beta"))
    store.remove_tenant("beta")
    store.delete_checkpoints("", kind="registry")
    code, out, _ = verify(store.url)
    assert code == 1 and "registry" in out and "missing" in out, out


def test_edited_policy_text_is_caught(store: Store) -> None:
    text = "version: 1\nname: p\ndefault: deny\n"
    rev = hashlib.sha256(text.encode()).hexdigest()
    log = open_audit(store.url)
    log.store_policy_revision(rev, "p", text, "p.yaml")
    log.record_decision(call(), decision())
    log.close()
    assert verify(store.url)[0] == 0
    store.edit_policy_text(rev, text.replace("deny", "allow"))
    code, out, _ = verify(store.url)
    assert code == 1 and "edited policy text" in out and rev[:12] in out, out


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_verify_on_a_missing_file_store_exits_2_and_creates_nothing(
    kind: str, tmp_path: Path
) -> None:
    where = tmp_path / "nowhere"
    url = str(where / "veto.db") if kind == "sqlite" else f"jsonl:///{where / 'a.jsonl'}"
    res = CliRunner().invoke(audit_cli, ["verify", "--db", url])
    assert res.exit_code == 2, res.output
    assert "no audit" in res.stderr and "no records" not in res.output
    assert not where.exists()


def test_verify_on_a_missing_postgres_schema_exits_2_and_creates_nothing(pg_url: str) -> None:
    import psycopg

    schema = pg_url.split("schema=")[1]
    res = CliRunner().invoke(audit_cli, ["verify", "--db", pg_url])
    assert res.exit_code == 2 and "no audit store" in res.stderr, res.output
    with psycopg.connect(pg_url.split("?")[0]) as con:
        found = con.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found is None


# --------------------------------------------------------------------------- key handling


def test_no_pinned_key_warns_loudly(tmp_path: Path) -> None:
    db = tmp_path / "veto.db"
    populate(str(db))
    (tmp_path / "audit-signing.key").unlink()  # verifying a copy, far from the key
    code, _, err = verify(str(db))
    assert code == 0 and "NO PUBLIC KEY PINNED" in err


def test_public_key_pinned_in_veto_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "veto.db"
    populate(str(db))
    real = open_audit(str(db)).public_key()
    (tmp_path / "audit-signing.key").unlink()
    Path("veto.toml").write_text(f'[audit]\npublic_key = "{"ab" * 32}"\n')
    code, out, _ = verify(str(db))
    assert code == 1 and "not a pinned key" in out
    Path("veto.toml").write_text(f'[audit]\npublic_key = ["{"ab" * 32}", "{real}"]\n')
    code, out, err = verify(str(db))
    assert code == 0 and "PINNED" not in err, (out, err)


def test_key_file_is_outside_the_store_and_private(tmp_path: Path) -> None:
    db = tmp_path / "veto.db"
    populate(str(db))
    key = tmp_path / "audit-signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert sqlite3.connect(db).execute("SELECT count(*) FROM audit_signing_key").fetchone() == (0,)


def _legacy_store(store: Store) -> tuple[bytes, str]:
    """A store as older versions left it: the signing seed inside, a checkpoint signed with it."""
    import base64
    import datetime as dt

    from veto_core.audit.record import canonical_json

    seed = bytes(range(32))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    log = open_audit(store.url)
    for i in range(3):
        log.record_decision(call(args={"i": i}), decision())
    head = log.sink.chain_head("acme")
    assert head is not None
    cp = Checkpoint(tenant="acme", kind="checkpoint", seq=head[0], hash=head[1],
                    created_at=dt.datetime.now(dt.UTC), info={}, public_key=public_key_hex(key),
                    signature="")  # fmt: skip
    log.sink.add_checkpoint(
        dataclasses.replace(cp, signature=key.sign(canonical_json(cp.payload())).hex())
    )
    log.sink.close()  # not log.close(): an old version signed nothing on close
    if store.kind == "jsonl":
        store.write_lines(
            [*store.lines(), {"type": "signing_key", "seed": base64.b64encode(seed).decode()}]
        )
    else:
        store.sql("INSERT INTO audit_signing_key (id, seed) VALUES (1, ?)", (seed,))
    return seed, public_key_hex(key)


def test_a_signing_seed_stored_by_an_older_version_is_moved_out(store: Store) -> None:
    if store.kind == "postgresql":
        keyfile = Path.home() / ".veto" / "audit-signing.key"
    else:
        keyfile = store.path.parent / "audit-signing.key"
    seed, pub = _legacy_store(store)
    assert not keyfile.exists()  # the legacy store predates key files
    assert store.stored_seed() == seed
    log = open_audit(store.url)
    assert any("moved the checkpoint signing key" in n for n in log.notices)
    assert store.stored_seed() is None
    assert keyfile.is_file() and log.public_key() == pub  # old checkpoints stay valid
    report = log.verify(public_key=pub)
    assert report.ok, report.to_dict()
    log.close()
    code, out, err = verify(store.url, "--public-key", pub)
    assert code == 0, (out, err)


# --------------------------------------------------------------------------- witnesses


class _WitnessServer(BaseHTTPRequestHandler):
    held: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).held.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        data = json.dumps(type(self).held).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_witness() -> Iterator[str]:
    handler = type("Held", (_WitnessServer,), {"held": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/witness"
    server.shutdown()
    server.server_close()


def test_webhook_witness_catches_a_rewound_head(
    tmp_path: Path, webhook_witness: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VETO_AUDIT_WITNESS", webhook_witness)
    store = Store("sqlite", tmp_path, None)  # type: ignore[arg-type]
    populate(store.url, n=4)
    third = (
        sqlite3.connect(store.path)
        .execute("SELECT hash FROM audit_records WHERE seq = 3")
        .fetchone()[0]
    )
    store.delete_records("acme", from_seq=4)
    store.set_head("acme", 3, third)
    store.delete_checkpoints("acme")
    code, out, _ = verify(store.url)
    assert code == 1 and "a witness saw the chain at seq 4" in out, out


def test_witness_hook_answers_for_the_builtin_schemes() -> None:
    from veto_core.audit.witness import FileWitness, WebhookWitness, WitnessConfig
    from veto_core.plugins import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    got = pm.hook.veto_audit_witness(config=WitnessConfig.parse("file:///tmp/w.jsonl"))
    assert [type(w) for a in got for w in a] == [FileWitness]
    got = pm.hook.veto_audit_witness(config=WitnessConfig.parse("https://w.example/x"))
    assert [type(w) for a in got for w in a] == [WebhookWitness]
    assert all(a == [] for a in pm.hook.veto_audit_witness(config=WitnessConfig.parse("ftp://x")))


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[audit]\npublic_key = "abc"\n', "must be 64 hex characters"),
        ("[audit]\npublic_key = 5\n", "string or a list of strings"),
        ("[audit]\ncheckpoint_every = 0\n", "positive number of records"),
        ('[audit]\nwitness = ["gopher://x"]\n', "no audit witness for URL scheme 'gopher'"),
    ],
)
def test_malformed_audit_settings_fail_closed(tmp_path: Path, toml: str, message: str) -> None:
    from veto_core.audit import AuditUnavailable

    Path("veto.toml").write_text(toml)
    with pytest.raises(AuditUnavailable, match=message):
        open_audit(str(tmp_path / "veto.db"))


def test_legitimate_purge_and_erasure_still_verify_against_the_witness(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    monkeypatch.setenv("VETO_AUDIT_WITNESS", f"file://{tmp_path / 'w' / 'witness.jsonl'}")
    populate(store.url, tenants=("acme", "beta"))
    log = open_audit(store.url)
    res = log.purge("acme", 0, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert res.deleted == 6
    assert log.erase_user("u1", tenant="beta")
    log.close()
    code, out, err = verify(store.url)
    assert code == 0, (out, err)


class _KmsSigner:
    """Stands in for a KMS client: signs on request, never hands out the key."""

    calls = 0

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(b"k" * 32)

    def public_key_hex(self) -> str:
        return public_key_hex(self._key)

    def sign(self, message: bytes) -> bytes:
        type(self).calls += 1
        return self._key.sign(message)


def kms_signer() -> _KmsSigner:
    return _KmsSigner()


def test_a_kms_style_signer_plugin_signs_and_no_key_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VETO_AUDIT_SIGNER", f"{__name__}:kms_signer")
    db = tmp_path / "veto.db"
    populate(str(db))
    assert _KmsSigner.calls > 0
    assert not (tmp_path / "audit-signing.key").exists()
    code, out, err = verify(str(db), "--public-key", _KmsSigner().public_key_hex())
    assert code == 0, (out, err)
    code, out, _ = verify(str(db), "--public-key", "cd" * 32)
    assert code == 1 and "not a pinned key" in out
