"""Policy bundles: base.yaml + tenants/<tenant>.yaml overlays that can only narrow."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from veto_core import Effect, PolicyError, Principal, ToolCall, Veto

BASE = """\
version: 1
name: base
default: deny
lists:
  domains: [example.com, example.org]
  blocked: [evil.test, spam.test]
  vips: [ceo, cfo]
  owners: [alice, bob]
roles:
  support: {}
rules:
  - id: mail
    effect: allow
    tools: [send_email]
    if: {field: args.to, email_domain_in: {list: domains}}
  - id: no-blocked
    effect: deny
    tools: [fetch]
    if: {field: args.host, in: {list: blocked}}
  - id: fetch
    effect: allow
    tools: [fetch]
  - id: not-vip
    effect: allow
    tools: [lookup]
    if: {field: args.user, not_in: {list: vips}}
  - id: owners-exact
    effect: allow
    tools: [transfer]
    if: {field: args.owners, equals: {list: owners}}
"""


def bundle(root: Path, overlays: dict[str, str], base: str = BASE) -> Path:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    (root / "base.yaml").write_text(base)
    for tenant, text in overlays.items():
        (root / "tenants" / f"{tenant}.yaml").write_text(text)
    return root


def test_a_tenant_gets_its_overlay_and_others_the_base(tmp_path: Path) -> None:
    path = bundle(
        tmp_path / "b",
        {
            "acme": "version: 1\nname: acme\nrules:\n  - {id: acme-no-fetch, effect: deny, tools: [fetch], if: {field: args.host, ends_with: .ru}}\n"
        },
    )
    acme = Veto.from_file(path, tenant="acme")
    assert acme.decide(ToolCall(tool="fetch", args={"host": "x.ru"})).effect is Effect.DENY
    assert acme.decide(ToolCall(tool="fetch", args={"host": "x.de"})).effect is Effect.ALLOW
    other = Veto.from_file(path, tenant="globex")  # no overlay: base alone
    assert other.decide(ToolCall(tool="fetch", args={"host": "x.ru"})).effect is Effect.ALLOW
    assert other.policy_revision != acme.policy_revision


def test_one_process_serves_many_tenants_each_compiled_once(tmp_path: Path) -> None:
    path = bundle(
        tmp_path / "b",
        {
            "acme": "version: 1\nname: acme\nrules:\n  - {id: acme-deny, effect: deny, tools: [fetch]}\n",
            "initech": "version: 1\nname: initech\nrules:\n  - {id: initech-gate, effect: require_approval, tools: [fetch], approval: {approvers: [ops]}}\n",
        },
    )
    veto = Veto.from_file(path)  # no default tenant: the call says whose it is
    assert veto.for_tenant("acme") is veto.for_tenant("acme")
    call = ToolCall(tool="fetch", args={"host": "x.de"})  # base: allowed (host not blocked)

    def decide(tenant: str | None) -> Effect:
        return veto.decide(ToolCall(tool=call.tool, args=call.args, tenant=tenant)).effect

    assert decide("acme") is Effect.DENY
    assert decide("initech") is Effect.REQUIRE_APPROVAL
    assert decide("globex") is Effect.ALLOW
    assert decide(None) is Effect.ALLOW
    # The principal's tenant counts as the call's tenant.
    assert (
        veto.decide(ToolCall(tool="fetch", principal=Principal(tenant="acme"))).effect
        is Effect.DENY
    )


def test_an_invalid_tenant_name_is_denied_not_resolved_as_a_path(tmp_path: Path) -> None:
    path = bundle(tmp_path / "b", {})
    (tmp_path / "evil.yaml").write_text("version: 1\nname: evil\ndefault: allow\n")
    veto = Veto.from_file(path)
    decision = veto.decide(ToolCall(tool="anything", tenant="../../evil"))
    assert decision.effect is Effect.DENY
    assert "invalid tenant name" in decision.reason


def test_a_broken_overlay_fails_closed_for_that_tenant_only(tmp_path: Path) -> None:
    path = bundle(
        tmp_path / "b",
        {"acme": "version: 1\nname: acme\nrules:\n  - {id: x, effect: allow, tools: [fetch]}\n"},
    )
    veto = Veto.from_file(path)
    fetch = {"host": "x.de"}
    assert veto.decide(ToolCall(tool="fetch", args=fetch, tenant="acme")).effect is Effect.DENY
    assert veto.decide(ToolCall(tool="fetch", args=fetch, tenant="globex")).effect is Effect.ALLOW


WIDENING = [
    (
        "allow_rule",
        "rules:\n  - {id: x, effect: allow, tools: [fetch]}\n",
        "bundle/tenants/t.yaml:4:21 rules[0].effect: rule 'x': an overlay may only add deny or require_approval rules, never allow",
    ),
    (
        "extends",
        "extends: [../base.yaml]\n",
        "bundle/tenants/t.yaml:3:1 extends: an overlay has no extends of its own: it applies on top of base.yaml",
    ),
    (
        "roles",
        "roles:\n  admin: {inherits: [support]}\n",
        "bundle/tenants/t.yaml:3:1 roles: an overlay may not define roles (a role could inherit what the base grants)",
    ),
    (
        "default_allow",
        "default: allow\n",
        "bundle/tenants/t.yaml:3:10 default: default 'allow' would widen the base policy's default 'deny'",
    ),
    (
        "default_approval",
        "default: require_approval\n",
        "bundle/tenants/t.yaml:3:10 default: default 'require_approval' would widen the base policy's default 'deny'",
    ),
    (
        "list_grown",
        "lists:\n  domains: [example.com, example.org, gmail.com]\n",
        "bundle/tenants/t.yaml:4:12 lists.domains: list 'domains' is defined by the base policy and may only be narrowed; 'gmail.com' is not in it",
    ),
    (
        "list_narrowed_in_deny",
        "lists:\n  blocked: [evil.test]\n",
        "bundle/tenants/t.yaml:4:12 lists.blocked: list 'blocked' is used by a deny or require_approval rule of the base policy; narrowing it would widen what is allowed",
    ),
    (
        "list_narrowed_negated_in_allow",
        "lists:\n  vips: [ceo]\n",
        "bundle/tenants/t.yaml:4:9 lists.vips: list 'vips' is used negated by allow rule 'not-vip' of the base policy; narrowing it would widen what is allowed",
    ),
    (
        "list_compared_whole",
        "lists:\n  owners: [alice]\n",
        "bundle/tenants/t.yaml:4:11 lists.owners: list 'owners' is compared as a whole by rule 'owners-exact' of the base policy ('equals'); it cannot be redefined",
    ),
    (
        "replace_base_rule",
        "rules:\n  - {id: no-blocked, effect: deny, tools: [nothing]}\n",
        "bundle/tenants/t.yaml:4:10 rules[0].id: duplicate rule id 'no-blocked' (already defined in bundle/base.yaml:16)",
    ),
    (
        "weaker_audit",
        "audit: {mode: best_effort}\n",
        "bundle/tenants/t.yaml:3:15 audit.mode: audit mode 'best_effort' would weaken the base policy's 'required'",
    ),
    (
        "allow_among_denies",
        "rules:\n  - {id: d, effect: deny, tools: [a]}\n  - {id: e, effect: allow, tools: [fetch], when: {role: [support]}}\n",
        "bundle/tenants/t.yaml:5:21 rules[1].effect: rule 'e': an overlay may only add deny or require_approval rules, never allow",
    ),
]


@pytest.mark.parametrize(("case", "body", "message"), WIDENING, ids=[c[0] for c in WIDENING])
def test_widening_overlays_are_refused_with_exact_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, body: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    bundle(Path("bundle"), {"t": f"version: 1\nname: t-{case}\n{body}"})
    with pytest.raises(PolicyError) as err:
        Veto.from_file("bundle", tenant="t")
    assert str(err.value) == message


def test_safe_narrowing_is_accepted(tmp_path: Path) -> None:
    path = bundle(tmp_path / "b", {"t": "version: 1\nname: t\nlists:\n  domains: [example.com]\n"})
    veto = Veto.from_file(path, tenant="t")
    assert (
        veto.decide(ToolCall(tool="send_email", args={"to": "a@example.org"})).effect is Effect.DENY
    )
    assert (
        veto.decide(ToolCall(tool="send_email", args={"to": "a@example.com"})).effect
        is Effect.ALLOW
    )


# --- property: an overlay result never allows what the base blocks -----------------------

VALUES = ["a", "b", "c", "d"]
OPS = ["in", "not_in", "contains", "starts_with"]


@st.composite
def base_and_overlay(draw: st.DrawFn) -> tuple[str, str]:
    lists = {
        f"l{i}": draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=4, unique=True))
        for i in range(3)
    }
    rules = []
    for i in range(draw(st.integers(1, 6))):
        effect = draw(st.sampled_from(["allow", "deny", "require_approval"]))
        tool = draw(st.sampled_from(["t1", "t2"]))
        op = draw(st.sampled_from(OPS))
        lst = draw(st.sampled_from(sorted(lists)))
        cond = f"{{field: args.x, {op}: {{list: {lst}}}}}"
        if draw(st.booleans()):
            cond = f"{{not: {cond}}}"
        otherwise = ""
        if effect == "allow" and draw(st.booleans()):
            otherwise = ", otherwise: deny"
        if effect == "require_approval":
            otherwise += ", approval: {approvers: [ops]}"
        rules.append(f"  - {{id: r{i}, effect: {effect}, tools: [{tool}], if: {cond}{otherwise}}}")
    default = draw(st.sampled_from(["deny", "allow"]))  # require_approval names nobody: an error
    base = (
        f"version: 1\nname: base\ndefault: {default}\nlists:\n"
        + "".join(f"  {k}: [{', '.join(v)}]\n" for k, v in lists.items())
        + "rules:\n"
        + "\n".join(rules)
        + "\n"
    )
    narrowed = {k: v for k, v in lists.items() if draw(st.booleans())}
    overlay_lists = "".join(
        f"  {k}: [{', '.join(draw(st.lists(st.sampled_from(v), min_size=1, unique=True)))}]\n"
        for k, v in narrowed.items()
    )
    overlay_rules = []
    for i in range(draw(st.integers(0, 2))):
        effect = draw(st.sampled_from(["deny", "require_approval"]))
        extra = ", approval: {approvers: [ops]}" if effect == "require_approval" else ""
        overlay_rules.append(
            f"  - {{id: o{i}, effect: {effect}, tools: [{draw(st.sampled_from(['t1', 't2']))}], "
            f"if: {{field: args.x, equals: {draw(st.sampled_from(VALUES))}}}{extra}}}"
        )
    overlay = "version: 1\nname: overlay\n"
    if overlay_lists:
        overlay += "lists:\n" + overlay_lists
    if overlay_rules:
        overlay += "rules:\n" + "\n".join(overlay_rules) + "\n"
    return base, overlay


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(
    pair=base_and_overlay(),
    calls=st.lists(
        st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from([*VALUES, "zz"])),
        min_size=1,
        max_size=8,
    ),
)
def test_overlay_never_allows_what_the_base_blocks(
    tmp_path_factory: pytest.TempPathFactory, pair: tuple[str, str], calls: list[tuple[str, str]]
) -> None:
    base, overlay = pair
    root = bundle(tmp_path_factory.mktemp("b"), {"t": overlay}, base=base)
    try:
        narrowed = Veto.from_file(root, tenant="t")
    except PolicyError:
        assume(False)  # a refused overlay is the other half of the guarantee
        return
    original = Veto.from_file(root)
    for tool, x in calls:
        call = ToolCall(tool=tool, args={"x": x})
        if narrowed.decide(call).effect is Effect.ALLOW:
            assert original.decide(call).effect is Effect.ALLOW, (base, overlay, call)


# --- hot reload ----------------------------------------------------------------------------


def test_watch_reloads_on_change_and_keeps_the_last_good_policy(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nname: p\nrules:\n  - {id: a, effect: allow, tools: [x]}\n")
    veto = Veto.from_file(path, watch=True)
    try:
        watcher = veto._watcher
        assert watcher is not None
        first = veto.policy_revision
        path.write_text("version: 1\nname: p\nrules:\n  - {id: a, effect: deny, tools: [x]}\n")
        deadline = time.monotonic() + 5
        while veto.policy_revision == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert veto.decide(ToolCall(tool="x")).effect is Effect.DENY
        second = veto.policy_revision
        path.write_text("version: 1\nname: p\nrules:\n  - {id: a, effect: alow, tools: [x]}\n")
        deadline = time.monotonic() + 5
        while watcher.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.failures == 1 and "did you mean 'allow'" in (watcher.last_error or "")
        assert veto.policy_revision == second  # the broken edit never decides anything
        assert veto.decide(ToolCall(tool="x")).effect is Effect.DENY
    finally:
        veto.close()


def test_watch_follows_a_bundle_overlay_that_appears(tmp_path: Path) -> None:
    path = bundle(tmp_path / "b", {})
    veto = Veto.from_file(path, tenant="acme", watch=True)
    try:
        fetch = ToolCall(tool="fetch", args={"host": "x.de"})
        assert veto.decide(fetch).effect is Effect.ALLOW
        (path / "tenants" / "acme.yaml").write_text(
            "version: 1\nname: acme\nrules:\n  - {id: no, effect: deny, tools: [fetch]}\n"
        )
        deadline = time.monotonic() + 5
        while (
            veto.decide(ToolCall(tool="fetch")).effect is Effect.ALLOW
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert veto.decide(ToolCall(tool="fetch")).effect is Effect.DENY
    finally:
        veto.close()


def test_hot_reload_under_a_concurrent_decide_loop_never_mixes_policies(tmp_path: Path) -> None:
    """100 reloads (some of a half-written file) while two threads decide: every
    decision comes whole from revision A or B, never from a mix or from no policy."""
    import threading

    texts = {
        "A": "version: 1\nname: p\nlists: {tools: [x]}\nrules:\n  - {id: r, effect: allow, tools: [x], reason: from A}\n",
        "B": "version: 1\nname: p\nlists: {tools: [x]}\nrules:\n  - {id: r, effect: deny, tools: [x], reason: from B}\n",
    }
    path = tmp_path / "p.yaml"
    path.write_text(texts["A"])
    veto = Veto.from_file(
        path,
        watch=True,
    )
    watcher = veto._watcher
    assert watcher is not None
    watcher.stop()  # drive reloads by hand, 100 of them, as fast as they can go
    revisions = {Veto.from_yaml(t, file=str(path)).policy_revision: k for k, t in texts.items()}
    seen: list[tuple[str, Effect, tuple[str, ...]]] = []
    stop = threading.Event()

    def decide_loop() -> None:
        call = ToolCall(tool="x")
        while not stop.is_set():
            d = veto.decide(call)
            seen.append((d.policy_revision, d.effect, d.reasons))

    threads = [threading.Thread(target=decide_loop) for _ in range(2)]
    for t in threads:
        t.start()
    reloads = 0
    for i in range(100):
        text = texts["B" if i % 2 == 0 else "A"]
        if i % 10 == 5:
            path.write_text(text[: len(text) // 2])  # a half-written edit: must be refused
            watcher.check()
        path.write_text(text)
        reloads += watcher.check()
    stop.set()
    for t in threads:
        t.join()
    veto.close()
    assert reloads >= 90 and watcher.failures == 10
    assert len(seen) > 100
    for revision, effect, reasons in seen:
        which = revisions[revision]  # a KeyError here would be a decision from a third policy
        assert (effect, reasons) == (
            (Effect.ALLOW, ("from A [r]",)) if which == "A" else (Effect.DENY, ("from B [r]",))
        )


def test_explain_and_authorize_use_the_calls_tenant_overlay(tmp_path: Path) -> None:
    path = bundle(
        tmp_path / "b",
        {
            "acme": "version: 1\nname: acme\nrules:\n  - {id: acme-deny, effect: deny, tools: [fetch]}\n"
        },
    )
    veto = Veto.from_file(path, db=f"sqlite:///{tmp_path / 'v.db'}")
    call = ToolCall(tool="fetch", args={"host": "x.de"}, tenant="acme")
    explained = veto.explain(call)
    assert explained.decision.effect is Effect.DENY
    assert "acme-deny" in {t.rule_id for t in explained.rules}
    auth = veto.authorize(call)
    assert not auth.run_tool and auth.decision.deciding_rule_ids == ("acme-deny",)
    assert veto.audit.query(tenant="acme")[0].policy_name == "acme"
    refused = veto.authorize(ToolCall(tool="fetch", tenant="no/such"))
    assert not refused.run_tool and "invalid tenant name" in refused.decision.reason
    veto.close()
