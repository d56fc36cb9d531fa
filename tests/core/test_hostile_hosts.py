"""Hostile hosts, paths, e-mails and sizes (DESIGN.md 2.1 "Hostile values", issue 14 class 5).

- A host is read the way browsers read it (WHATWG URL): decimal, hex, octal and short
  IPv4 forms, IPv4-mapped IPv6 and zone ids cannot slip past a deny list, for
  `url_host_in` and `ip_in_cidr` alike.
- A port that is not 1-65535 is an error (`api.example.com:443.evil.com` too).
- A backslash in `path_within` is an error; so is any control character in an e-mail.
- Every string operator refuses a value over 64 KiB; e-mail/URL parsing one over
  2,048 characters; no input takes more than 50 ms to decide.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from engine_helpers import call, evaluate, make_veto
from hypothesis import given
from hypothesis import strategies as st

from veto_core import Effect, PolicyError
from veto_core.cli import main


def _id(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"


# --- IPv4 spellings ---------------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0x7f000001",  # one hex number
    "017700000001",  # one octal number
    "0x7f.1",  # hex, short
    "0x7F.0.0.1",
    "0177.0.0.1",  # octal
    "0177.1",
    "127.1",  # short
    "127.0.1",
    "127.0.0.1.",  # trailing dot
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "::ffff:7f00:1",
    "0:0:0:0:0:ffff:127.0.0.1",
]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_every_ipv4_spelling_is_in_the_cidr(spelling: str) -> None:
    value = f"[{spelling}]" if ":" in spelling else spelling
    assert evaluate({"field": "args.ip", "ip_in_cidr": "127.0.0.0/8"}, {"ip": value}) == "true"
    assert evaluate({"field": "args.ip", "ip_in_cidr": "10.0.0.0/8"}, {"ip": value}) == "false"


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
@pytest.mark.parametrize("template", ["http://{}/", "https://user@{}:8080/x", "{}/path", "{}:81"])
def test_every_ipv4_spelling_of_a_url_host_is_caught(spelling: str, template: str) -> None:
    host = f"[{spelling}]" if ":" in spelling else spelling
    url = template.format(host)
    deny = make_veto(
        [
            {"id": "all", "effect": "allow", "tools": ["fetch"]},
            {"id": "no-local", "effect": "deny", "tools": ["fetch"],
             "if": {"field": "args.url", "url_host_in": ["127.0.0.1", "localhost"]}},
        ]
    )  # fmt: skip
    d = deny.decide(call("fetch", {"url": url}))
    assert d.effect is Effect.DENY and d.deciding_rule_ids == ("no-local",), (url, d)
    assert d.errors == ()


def test_percent_encoded_hosts_are_decoded_like_browsers_do() -> None:
    leaf = {"field": "args.url", "url_host_in": ["127.0.0.1"]}
    assert evaluate(leaf, {"url": "http://%31%32%37.0.0.1/"}) == "true"


@pytest.mark.parametrize(
    "value", ["fe80::1%eth0", "[fe80::1%eth0]", "fe80::1%25eth0", "[fe80::1%1]"], ids=_id
)
def test_zone_ids_are_stripped_from_ip_values(value: str) -> None:
    assert evaluate({"field": "args.ip", "ip_in_cidr": "fe80::/10"}, {"ip": value}) == "true"
    assert evaluate({"field": "args.ip", "ip_in_cidr": "fd00::/8"}, {"ip": value}) == "false"


@pytest.mark.parametrize("url", ["http://[fe80::1%25eth0]/", "http://[fe80::1%eth0]:80/x"])
def test_zone_ids_are_stripped_from_url_hosts(url: str) -> None:
    assert evaluate({"field": "args.url", "url_host_in": ["fe80::1"]}, {"url": url}) == "true"


@pytest.mark.parametrize(
    "value", ["1.2.3.4.5", "256.1.1.1", "0x100000000", "localhost", "10.0.0.1/8", "1.2.3.4:80", ""]
)
def test_values_that_are_no_ip_are_errors(value: str) -> None:
    assert evaluate({"field": "args.ip", "ip_in_cidr": "0.0.0.0/0"}, {"ip": value}) == "error"


# --- ports --------------------------------------------------------------------------------

BAD_PORTS = [
    "https://api.example.com:443.evil.com/",
    "https://api.example.com:443.evil.com",
    "api.example.com:443.evil.com/x",
    "https://api.example.com:0/",
    "https://api.example.com:00/",
    "https://api.example.com:65536/",
    "https://api.example.com:99999999999/",
    "https://api.example.com:-1/",
    "https://api.example.com:0x50/",
    "api.example.com:0/x",
]


@pytest.mark.parametrize("url", BAD_PORTS)
def test_a_port_that_is_not_1_to_65535_is_an_error(url: str) -> None:
    leaf = {"field": "args.url", "url_host_in": ["api.example.com"]}
    assert evaluate(leaf, {"url": url}) == "error"
    allow = make_veto([{"id": "api", "effect": "allow", "tools": ["fetch"], "if": leaf}])
    d = allow.decide(call("fetch", {"url": url}))
    assert d.effect is Effect.DENY and d.errors, d


@pytest.mark.parametrize(
    "url", ["https://api.example.com:1/", "https://api.example.com:65535/x", "api.example.com:443"]
)
def test_ports_in_range_are_fine(url: str) -> None:
    assert (
        evaluate({"field": "args.url", "url_host_in": ["api.example.com"]}, {"url": url}) == "true"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com\\@evil.com/",
        "https://api.example.com\t.evil.com/",
        "https://api.example.com\n.evil.com/",
        "https://api.example.com/\r\nHost: evil.com",
        "https://api.example.com\x00.evil.com/",
        "https://api.exa mple.com/",
    ],
    ids=_id,
)
def test_ambiguous_urls_are_errors(url: str) -> None:
    assert (
        evaluate({"field": "args.url", "url_host_in": ["api.example.com"]}, {"url": url}) == "error"
    )


@pytest.mark.parametrize(
    ("url", "expect"),
    [
        ("https://api.example.com%2f@evil.com/", "false"),  # userinfo: the host is evil.com
        ("https://api.example.com#@evil.com", "true"),  # a fragment
        ("https://API.Example.COM./", "true"),
        ("//api.example.com/x", "true"),
    ],
)
def test_urls_are_read_as_browsers_read_them(url: str, expect: str) -> None:
    assert (
        evaluate({"field": "args.url", "url_host_in": ["api.example.com"]}, {"url": url}) == expect
    )


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/srv/data/..\\..\\etc", "/srv/data\\x", "/srv/data/a\\", "\\srv\\data"], ids=_id
)
def test_a_backslash_in_a_path_is_an_error(path: str) -> None:
    leaf = {"field": "args.path", "path_within": "/srv/data"}
    assert evaluate(leaf, {"path": path}) == "error"
    allow = make_veto([{"id": "files", "effect": "allow", "tools": ["read"], "if": leaf}])
    assert allow.decide(call("read", {"path": path})).effect is Effect.DENY


def test_a_backslash_in_a_base_path_is_a_load_error() -> None:
    with pytest.raises(PolicyError, match="backslash"):
        make_veto([{"id": "r", "effect": "allow", "tools": ["t"], "if": {"field": "args.p", "path_within": "/srv\\data"}}])  # fmt: skip


# --- e-mails ------------------------------------------------------------------------------

CONTROL_CHARACTERS = ["\n", "\r", "\r\n", "\x00", "\t", "\x0b", "\x1b", "\x7f", "\x85", "\u0080"]


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=_id)
@pytest.mark.parametrize(
    "template", ["a@example.com{}", "{}a@example.com", "a{}b@example.com", "Ann{} <a@example.com>"]
)
def test_an_email_with_any_control_character_is_an_error(char: str, template: str) -> None:
    value = template.format(char)
    leaf = {"field": "args.to", "email_domain_in": ["example.com"]}
    assert evaluate(leaf, {"to": value}) == "error"
    allow = make_veto([{"id": "mail", "effect": "allow", "tools": ["send"], "if": leaf}])
    assert allow.decide(call("send", {"to": value})).effect is Effect.DENY


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("a@example.com", "true"),
        ("Ann <ann@example.com>", "true"),
        ("<ann@example.com>", "true"),
        ('"Ann, B." <ann@example.com>', "true"),
        ('"ann@evil.com" <ann@example.com>', "true"),
        ("Ann B. Example <ann@example.com>", "true"),
        ('"john doe"@example.com', "true"),
        ("first.last+tag@example.com", "true"),
        ("ann@EXAMPLE.com", "true"),
        ("ann@bücher.example", "false"),
        ("ann@evil.com", "false"),
        ("Ann <ann@evil.com>", "false"),
        ("ann@example.com <ann@evil.com>", "error"),
        ("a@example.com, b@example.com", "error"),
        ("a@example.com b@example.com", "error"),
        ("group: a@example.com;", "error"),
        ("ann@example.com (comment)", "error"),
        ("ann", "error"),
        ("@example.com", "error"),
        ("ann@", "error"),
        ("ann@@example.com", "error"),
        ("ann@example.com>", "error"),
        ("Ann <ann@example.com", "error"),
        (".ann@example.com", "error"),
        ("ann..b@example.com", "error"),
        ('"unterminated@example.com', "error"),
        ("ann@exa mple.com", "error"),
        ("ann@example.com:25", "error"),
        ("ann@example.com/x", "error"),
    ],
    ids=_id,
)
def test_emails_parse_as_exactly_one_address(value: str, expect: str) -> None:
    assert (
        evaluate({"field": "args.to", "email_domain_in": ["example.com"]}, {"to": value}) == expect
    )


# --- sizes and time -----------------------------------------------------------------------

OVER_64_KIB = "a" * (64 * 1024 + 1)
OVER_64_KIB_UTF8 = "é" * (32 * 1024 + 1)  # 32 Ki characters, over 64 KiB in UTF-8

STRING_LEAVES: list[tuple[str, Any]] = [
    ("equals", "a"),
    ("not_equals", "a"),
    ("in", ["a", "b"]),
    ("not_in", ["a", "b"]),
    ("contains", "zzz"),
    ("starts_with", "zzz"),
    ("ends_with", "zzz"),
    ("matches", "zzz"),
    ("glob", "*zzz"),
    ("length_less_than", 10),
    ("path_within", "/srv"),
    ("url_host_in", ["example.com"]),
    ("email_domain_in", ["example.com"]),
    ("ip_in_cidr", "10.0.0.0/8"),
]


@pytest.mark.parametrize("value", [OVER_64_KIB, OVER_64_KIB_UTF8], ids=["ascii", "utf8"])
@pytest.mark.parametrize(("op", "operand"), STRING_LEAVES, ids=lambda x: str(x)[:20])
def test_every_string_operator_refuses_a_value_over_64_kib(
    op: str, operand: Any, value: str
) -> None:
    assert evaluate({"field": "args.x", op: operand}, {"x": value}) == "error"
    # The same through a {field:} operand.
    if op in ("equals", "contains", "starts_with", "matches"):
        leaf = {"field": "args.y", op: {"field": "args.x"}}
        assert evaluate(leaf, {"x": value, "y": "a"}) == "error"


def test_a_value_of_64_kib_is_still_compared() -> None:
    value = "a" * (64 * 1024)
    assert evaluate({"field": "args.x", "starts_with": "a"}, {"x": value}) == "true"


@pytest.mark.parametrize(
    ("op", "make"),
    [
        ("url_host_in", lambda n: "https://example.com/" + "a" * n),
        ("email_domain_in", lambda n: "a" * n + "@example.com"),
    ],
)
def test_email_and_url_parsing_refuse_more_than_2048_characters(op: str, make: Any) -> None:
    leaf = {"field": "args.x", op: ["example.com"]}
    ok = make(2048 - len(make(0)))
    assert len(ok) == 2048 and evaluate(leaf, {"x": ok}) == "true"
    assert evaluate(leaf, {"x": make(2049 - len(make(0)))}) == "error"


HOSTILE_INPUTS = [
    '"' * 20_000,
    '"' * 2_000,
    '"' * 1_999 + "@example.com",
    "<" * 2_000,
    "\\" * 2_000,
    "a" * 2_000 + "@" + "b" * 40,
    "(" * 2_000,
    "a@" + "b." * 1_000,
    "http://" + "a." * 1_000,
    "http://[" + ":" * 2_000 + "]/",
    "http://" + "%31" * 600,
    "0x" + "f" * 2_000,
    "1." * 1_000,
    "/" + "../" * 20_000,
    "/" + "a/" * 30_000,
    "/" + "//" * 30_000,
    "a" * 65_536,
    "9" * 65_536,
]
ALL_OPERATORS: list[tuple[str, Any]] = [
    *STRING_LEAVES,
    ("less_than", 5),
    ("between", [1, 2]),
    ("time_between", {"from": "09:00", "to": "17:00"}),
    ("weekday_in", ["mon"]),
]


def _fastest(fn: Any, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize(("op", "operand"), ALL_OPERATORS, ids=lambda x: str(x)[:20])
def test_no_input_takes_more_than_50_ms_to_decide(op: str, operand: Any) -> None:
    veto = make_veto(
        [{"id": "r", "effect": "deny", "tools": ["t"], "if": {"field": "args.x", op: operand}}],
        default="allow",
    )
    for value in HOSTILE_INPUTS:
        c = call("t", {"x": value})
        elapsed = _fastest(lambda c=c: veto.decide(c))
        assert elapsed < 0.05, (op, _id(value), elapsed)


# --- end to end through the CLI -------------------------------------------------------------

CLI_POLICY = """\
version: 1
name: net
rules:
  - {id: fetch-api, effect: allow, tools: [fetch], if: {field: args.url, url_host_in: [api.example.com]}}
  - {id: no-internal, effect: deny, tools: [fetch], if: {field: args.url, url_host_in: ["127.0.0.1", "169.254.169.254"]}}
  - {id: connect, effect: allow, tools: [connect], if: {not: {field: args.ip, ip_in_cidr: [127.0.0.0/8, 169.254.0.0/16]}}}
  - {id: files, effect: allow, tools: [read], if: {field: args.path, path_within: /srv/data}}
  - {id: mail, effect: allow, tools: [send], if: {field: args.to, email_domain_in: [example.com]}}
"""


def test_veto_check_batch_refuses_hostile_hosts_paths_and_emails(tmp_path: Path) -> None:
    policy = tmp_path / "net.yaml"
    policy.write_text(CLI_POLICY)
    lines: list[tuple[dict[str, Any], str]] = [
        ({"tool": "fetch", "args": {"url": "https://api.example.com/v1"}}, "allow"),
        ({"tool": "fetch", "args": {"url": "https://api.example.com:443.evil.com/"}}, "deny"),
        ({"tool": "fetch", "args": {"url": "http://2852039166/latest/meta-data"}}, "deny"),
        ({"tool": "connect", "args": {"ip": "10.0.0.1"}}, "allow"),
        ({"tool": "connect", "args": {"ip": "0x7f.1"}}, "deny"),
        ({"tool": "connect", "args": {"ip": "[::ffff:169.254.169.254]"}}, "deny"),
        ({"tool": "read", "args": {"path": "/srv/data/a.txt"}}, "allow"),
        ({"tool": "read", "args": {"path": "/srv/data/..\\..\\etc"}}, "deny"),
        ({"tool": "send", "args": {"to": "a@example.com"}}, "allow"),
        ({"tool": "send", "args": {"to": "a@example.com\n"}}, "deny"),
        ({"tool": "send", "args": {"to": '"' * 20_000}}, "deny"),
    ]
    start = time.perf_counter()
    result = CliRunner().invoke(
        main,
        ["check", "-p", str(policy), "--batch", "-"],
        input="".join(json.dumps(line) + "\n" for line, _ in lines),
    )
    assert time.perf_counter() - start < 5
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["effect"] for o in out] == [expect for _, expect in lines], out


# --- the plain-DNS-name fast path of normalize_host ------------------------------------

_HOSTISH = st.text(
    alphabet=st.sampled_from("abxnXNZz019-._K@:/ [ ]%\u0130\u00e9\u0131\u017f\u212a\uff0e\u3002"),
    max_size=24,
)
_LABEL = st.text(alphabet=st.sampled_from("abcxnXN0189-"), min_size=0, max_size=70)
_DOTTED = st.lists(_LABEL, min_size=1, max_size=5).map(".".join)


@given(host=st.one_of(_HOSTISH, _DOTTED, _DOTTED.map(lambda h: h + ".")))
def test_plain_dns_names_normalize_as_the_url_parser_does(host: str) -> None:
    """`normalize_host` skips the WHATWG URL parser (ada_url) for plain ASCII DNS
    names: whatever the fast path accepts, the parser reads the same way."""
    from veto_core.policy.operators import EvalError, _plain_dns_name, _whatwg_host

    fast = _plain_dns_name(host)
    if fast is None:
        return
    try:
        reference = _whatwg_host(host)
    except EvalError as exc:
        raise AssertionError(f"the fast path accepted {host!r}, the parser refused it") from exc
    assert fast == reference


@pytest.mark.parametrize(
    ("host", "plain"),
    [
        ("Mail.Example.COM", "mail.example.com"),
        ("example.com.", "example.com"),
        ("a--b.example", "a--b.example"),
        ("-x-.y-", "-x-.y-"),
        ("localhost", "localhost"),
        ("xn--bcher-kva.example", None),  # Punycode: decoded and checked by the parser
        ("a.XN--bcher-kva", None),
        ("1.2.3.4", None),  # IPv4 forms
        ("0x7f.1", None),
        ("a.0x1f", None),
        ("a.1b", None),
        ("a..b", None),
        (".a", None),
        ("b\u00fccher.example", None),  # IDNA
        ("\u212aelvin.example", None),  # the Kelvin sign folds to k only through UTS #46
        ("a_b.example", None),
    ],
)
def test_plain_dns_name_fast_path_cases(host: str, plain: str | None) -> None:
    from veto_core.policy.operators import _plain_dns_name, _whatwg_host, normalize_host

    assert _plain_dns_name(host) == plain
    if plain is not None:
        assert normalize_host(host) == _whatwg_host(host) == plain
