"""Every operator of DESIGN.md 2.1, through the whole compile path (``Veto.from_yaml``).

Each case is one condition, one call and the expected outcome of the condition:
``true``, ``false`` or ``error``. The condition is the ``if`` of a deny rule in a
default-allow policy, so the outcome is read off the decision (deny without errors,
allow, deny with errors); see ``engine_helpers.evaluate``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from engine_helpers import Outcome, evaluate

from veto_core import PolicyError, Veto


@dataclass(frozen=True)
class Case:
    id: str
    cond: dict[str, Any]
    args: dict[str, Any]
    expect: Outcome
    call: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, Any] | None = None


def C(
    id: str,
    cond: dict[str, Any],
    args: dict[str, Any],
    expect: Outcome,
    *,
    lists: dict[str, Any] | None = None,
    **call: Any,
) -> Case:
    return Case(id, cond, args, expect, call, lists)


def x(op: str, operand: Any, **more: Any) -> dict[str, Any]:
    """A leaf on ``args.x``."""
    return {"field": "args.x", op: operand, **more}


LISTS = {"domains": ["example.com", "*.example.org"], "tags": ["red", "green"]}

CASES: list[Case] = [
    # --- equals / not_equals -------------------------------------------------------------
    C("equals-str", x("equals", "a"), {"x": "a"}, "true"),
    C("equals-str-no", x("equals", "a"), {"x": "b"}, "false"),
    C("equals-case-sensitive", x("equals", "abc"), {"x": "ABC"}, "false"),
    C("equals-ignore-case", x("equals", "abc", ignore_case=True), {"x": "ABC"}, "true"),
    C("equals-int", x("equals", 5), {"x": 5}, "true"),
    C("equals-int-float", x("equals", 5), {"x": 5.0}, "true"),
    C("equals-numeric-string", x("equals", 100), {"x": "100.0"}, "true"),
    C("equals-numeric-operand-string", x("equals", "100"), {"x": 100}, "true"),
    C("equals-non-numeric-string-vs-number", x("equals", 100), {"x": "hundred"}, "false"),
    C("equals-bool-is-not-1", x("equals", 1), {"x": True}, "false"),
    C("equals-bool-not-0", x("equals", 0), {"x": False}, "false"),
    C("equals-bool", x("equals", True), {"x": True}, "true"),
    C("equals-bool-vs-string", x("equals", True), {"x": "true"}, "false"),
    C("equals-null-operand", x("equals", None), {"x": None}, "true"),
    C("equals-null-value", x("equals", "a"), {"x": None}, "false"),
    C("equals-list", x("equals", [1, "a"]), {"x": [1, "a"]}, "true"),
    C("equals-object", x("equals", {"k": 1}), {"x": {"k": 1}}, "true"),
    C("equals-missing", x("equals", "a"), {}, "error"),
    C("not-equals", x("not_equals", "a"), {"x": "b"}, "true"),
    C("not-equals-same", x("not_equals", "a"), {"x": "a"}, "false"),
    C("not-equals-ignore-case", x("not_equals", "a", ignore_case=True), {"x": "A"}, "false"),
    C("not-equals-null-value", x("not_equals", "a"), {"x": None}, "true"),
    C("not-equals-null-both", x("not_equals", None), {"x": None}, "false"),
    C("not-equals-missing", x("not_equals", "a"), {}, "error"),
    C("equals-field-operand", x("equals", {"field": "args.y"}), {"x": 7, "y": "7"}, "true"),
    C("equals-field-operand-no", x("equals", {"field": "args.y"}), {"x": 7, "y": 8}, "false"),
    C("equals-field-operand-missing", x("equals", {"field": "args.y"}), {"x": 7}, "error"),
    C(
        "equals-field-operand-principal",
        x("equals", {"field": "principal.user"}),
        {"x": "u1"},
        "true",
        user="u1",
    ),
    C(
        "equals-field-operand-nested",
        x("equals", {"field": "context.limits.max"}),
        {"x": 3},
        "true",
        context={"limits": {"max": 3}},
    ),
    C(
        "equals-field-operand-index",
        x("equals", {"field": "args.pair[1]"}),
        {"x": "b", "pair": ["a", "b"]},
        "true",
    ),
    # --- in / not_in ---------------------------------------------------------------------
    C("in", x("in", ["a", "b"]), {"x": "b"}, "true"),
    C("in-no", x("in", ["a", "b"]), {"x": "c"}, "false"),
    C("in-ignore-case", x("in", ["a", "b"], ignore_case=True), {"x": "B"}, "true"),
    C("in-case-sensitive", x("in", ["a", "b"]), {"x": "B"}, "false"),
    C("in-numbers-numeric-string", x("in", [100, 200]), {"x": "100.0"}, "true"),
    C("in-numeric-strings-number", x("in", ["100", "200"]), {"x": 100}, "true"),
    C("in-bool-not-number", x("in", [1, 2]), {"x": True}, "false"),
    C("in-bool", x("in", [True]), {"x": True}, "true"),
    C("in-list-ref", x("in", {"list": "tags"}), {"x": "green"}, "true", lists=LISTS),
    C("in-list-ref-no", x("in", {"list": "tags"}), {"x": "blue"}, "false", lists=LISTS),
    C("in-null-value", x("in", ["a"]), {"x": None}, "error"),
    C("in-list-value", x("in", ["a"]), {"x": ["a"]}, "error"),
    C("in-missing", x("in", ["a"]), {}, "error"),
    C(
        "in-field-operand",
        x("in", {"field": "context.allowed"}),
        {"x": "b"},
        "true",
        context={"allowed": ["a", "b"]},
    ),
    C("not-in", x("not_in", ["a", "b"]), {"x": "c"}, "true"),
    C("not-in-no", x("not_in", ["a", "b"]), {"x": "a"}, "false"),
    C("not-in-ignore-case", x("not_in", ["a"], ignore_case=True), {"x": "A"}, "false"),
    C("not-in-list-ref", x("not_in", {"list": "tags"}), {"x": "blue"}, "true", lists=LISTS),
    C("not-in-null", x("not_in", ["a"]), {"x": None}, "error"),
    C("not-in-missing", x("not_in", ["a"]), {}, "error"),
    # --- contains ------------------------------------------------------------------------
    C("contains-substring", x("contains", "secret"), {"x": "top secret doc"}, "true"),
    C("contains-substring-no", x("contains", "secret"), {"x": "public"}, "false"),
    C("contains-ignore-case", x("contains", "SECRET", ignore_case=True), {"x": "secret"}, "true"),
    C("contains-case-sensitive", x("contains", "SECRET"), {"x": "secret"}, "false"),
    C("contains-list-element", x("contains", "b"), {"x": ["a", "b"]}, "true"),
    C("contains-list-element-no", x("contains", "c"), {"x": ["a", "b"]}, "false"),
    C("contains-list-number", x("contains", 2), {"x": [1, "2"]}, "true"),
    C("contains-list-ignore-case", x("contains", "B", ignore_case=True), {"x": ["b"]}, "true"),
    C("contains-any-of", x("contains", ["rm -rf", "mkfs"]), {"x": "sudo mkfs /dev/x"}, "true"),
    C("contains-any-of-no", x("contains", ["rm -rf", "mkfs"]), {"x": "ls"}, "false"),
    C(
        "contains-list-ref",
        x("contains", {"list": "tags"}),
        {"x": "a red car"},
        "true",
        lists=LISTS,
    ),
    C("contains-number-value", x("contains", "1"), {"x": 12}, "error"),
    C("contains-null", x("contains", "a"), {"x": None}, "error"),
    C("contains-missing", x("contains", "a"), {}, "error"),
    # --- starts_with / ends_with ---------------------------------------------------------
    C("starts-with", x("starts_with", "/tmp/"), {"x": "/tmp/a"}, "true"),
    C("starts-with-no", x("starts_with", "/tmp/"), {"x": "/etc/a"}, "false"),
    C("starts-with-any-of", x("starts_with", ["/a", "/b"]), {"x": "/b/c"}, "true"),
    C("starts-with-ignore-case", x("starts_with", "ab", ignore_case=True), {"x": "ABc"}, "true"),
    C("starts-with-case-sensitive", x("starts_with", "ab"), {"x": "ABc"}, "false"),
    C("starts-with-number", x("starts_with", "1"), {"x": 12}, "error"),
    C("starts-with-null", x("starts_with", "a"), {"x": None}, "error"),
    C("ends-with", x("ends_with", ".pdf"), {"x": "a.pdf"}, "true"),
    C("ends-with-no", x("ends_with", ".pdf"), {"x": "a.pdf.exe"}, "false"),
    C("ends-with-any-of", x("ends_with", [".exe", ".sh"]), {"x": "run.sh"}, "true"),
    C("ends-with-ignore-case", x("ends_with", ".pdf", ignore_case=True), {"x": "A.PDF"}, "true"),
    C("ends-with-list-value", x("ends_with", "a"), {"x": ["a"]}, "error"),
    C("ends-with-missing", x("ends_with", "a"), {}, "error"),
    # --- matches (RE2, unanchored search) ------------------------------------------------
    C("matches-unanchored", x("matches", "b+"), {"x": "abbbc"}, "true"),
    C("matches-no", x("matches", "z"), {"x": "abc"}, "false"),
    C("matches-anchored", x("matches", "^b"), {"x": "abc"}, "false"),
    C("matches-anchored-full", x("matches", "^[a-c]+$"), {"x": "abc"}, "true"),
    C("matches-case-sensitive", x("matches", "ABC"), {"x": "abc"}, "false"),
    C("matches-ignore-case", x("matches", "ABC", ignore_case=True), {"x": "xabcx"}, "true"),
    C("matches-any-of", x("matches", ["^x", "c$"]), {"x": "abc"}, "true"),
    C("matches-any-of-no", x("matches", ["^x", "^y"]), {"x": "abc"}, "false"),
    C("matches-number", x("matches", "1"), {"x": 1}, "error"),
    C("matches-null", x("matches", "a"), {"x": None}, "error"),
    C(
        "matches-field-operand",
        x("matches", {"field": "context.pattern"}),
        {"x": "order-123"},
        "true",
        context={"pattern": r"^order-\d+$"},
    ),
    C(
        "matches-field-operand-bad-regex",
        x("matches", {"field": "context.pattern"}),
        {"x": "a"},
        "error",
        context={"pattern": "(unclosed"},
    ),
    C(
        "matches-field-operand-backreference-is-not-re2",
        x("matches", {"field": "context.pattern"}),
        {"x": "aa"},
        "error",
        context={"pattern": r"(a)\1"},
    ),
    # --- glob (anchored, * crosses dots and slashes) -------------------------------------
    C("glob", x("glob", "report-*.pdf"), {"x": "report-2024.pdf"}, "true"),
    C("glob-anchored-start", x("glob", "report-*"), {"x": "old-report-1"}, "false"),
    C("glob-anchored-end", x("glob", "*.pdf"), {"x": "a.pdf.exe"}, "false"),
    C("glob-star-crosses-dots", x("glob", "crm.*"), {"x": "crm.contacts.delete"}, "true"),
    C("glob-star-crosses-slashes", x("glob", "/srv/*"), {"x": "/srv/a/b/c"}, "true"),
    C("glob-question", x("glob", "v?"), {"x": "v1"}, "true"),
    C("glob-question-one-char", x("glob", "v?"), {"x": "v12"}, "false"),
    C("glob-class", x("glob", "v[0-3]"), {"x": "v2"}, "true"),
    C("glob-negated-class", x("glob", "v[!0-3]"), {"x": "v2"}, "false"),
    C("glob-dot-is-literal", x("glob", "a.b"), {"x": "axb"}, "false"),
    C("glob-case-sensitive", x("glob", "A*"), {"x": "abc"}, "false"),
    C("glob-ignore-case", x("glob", "A*", ignore_case=True), {"x": "abc"}, "true"),
    C("glob-any-of", x("glob", ["*.exe", "*.sh"]), {"x": "x.sh"}, "true"),
    C("glob-number", x("glob", "1*"), {"x": 12}, "error"),
    # --- numeric comparisons -------------------------------------------------------------
    C("gt", x("greater_than", 100), {"x": 101}, "true"),
    C("gt-equal", x("greater_than", 100), {"x": 100}, "false"),
    C("gt-float", x("greater_than", 100), {"x": 100.5}, "true"),
    C("gt-numeric-string", x("greater_than", 100), {"x": "100.5"}, "true"),
    C("gt-numeric-string-no", x("greater_than", 100), {"x": "99"}, "false"),
    C("gt-string-operand", x("greater_than", "100.0"), {"x": 150}, "true"),
    C("gt-exponent-string", x("greater_than", 100), {"x": "1e3"}, "true"),
    C("gt-padded-string", x("greater_than", 100), {"x": " 101 "}, "true"),
    C("gt-non-numeric-string", x("greater_than", 100), {"x": "lots"}, "error"),
    C("gt-empty-string", x("greater_than", 100), {"x": ""}, "error"),
    C("gt-nan-string", x("greater_than", 100), {"x": "NaN"}, "error"),
    C("gt-infinity-string", x("greater_than", 100), {"x": "Infinity"}, "error"),
    C("gt-nan", x("greater_than", 100), {"x": float("nan")}, "error"),
    C("gt-infinity", x("greater_than", 100), {"x": float("inf")}, "error"),
    C("gt-neg-infinity", x("greater_than", 100), {"x": float("-inf")}, "error"),
    C("gt-bool", x("greater_than", 0), {"x": True}, "error"),
    C("gt-null", x("greater_than", 0), {"x": None}, "error"),
    C("gt-list", x("greater_than", 0), {"x": [1]}, "error"),
    C("gt-missing", x("greater_than", 0), {}, "error"),
    C("gt-big-int", x("greater_than", 10**18), {"x": 10**18 + 1}, "true"),
    C("gte", x("greater_or_equal", 100), {"x": 100}, "true"),
    C("gte-no", x("greater_or_equal", 100), {"x": 99.99}, "false"),
    C("gte-bool", x("greater_or_equal", 0), {"x": False}, "error"),
    C("lt", x("less_than", 0), {"x": -1}, "true"),
    C("lt-equal", x("less_than", 0), {"x": 0}, "false"),
    C("lt-numeric-string", x("less_than", 10), {"x": "-5"}, "true"),
    C("lt-non-numeric", x("less_than", 10), {"x": "five"}, "error"),
    C("lte", x("less_or_equal", 100), {"x": 100}, "true"),
    C("lte-no", x("less_or_equal", 100), {"x": 100.01}, "false"),
    C("lte-string-100.0", x("less_or_equal", 100), {"x": "100.0"}, "true"),
    C(
        "lte-field-operand",
        x("less_or_equal", {"field": "context.limit"}),
        {"x": 50},
        "true",
        context={"limit": 100},
    ),
    C(
        "lte-field-operand-no",
        x("less_or_equal", {"field": "context.limit"}),
        {"x": 150},
        "false",
        context={"limit": "100"},
    ),
    C(
        "lte-field-operand-not-a-number",
        x("less_or_equal", {"field": "context.limit"}),
        {"x": 50},
        "error",
        context={"limit": "unlimited"},
    ),
    C(
        "lte-field-operand-bool",
        x("less_or_equal", {"field": "context.limit"}),
        {"x": 50},
        "error",
        context={"limit": True},
    ),
    C(
        "lte-field-operand-missing",
        x("less_or_equal", {"field": "context.limit"}),
        {"x": 50},
        "error",
    ),
    C(
        "lte-field-operand-null",
        x("less_or_equal", {"field": "context.limit"}),
        {"x": 50},
        "error",
        context={"limit": None},
    ),
    # --- between (inclusive) -------------------------------------------------------------
    C("between-low", x("between", [1, 10]), {"x": 1}, "true"),
    C("between-high", x("between", [1, 10]), {"x": 10}, "true"),
    C("between-inside-string", x("between", [1, 10]), {"x": "5.5"}, "true"),
    C("between-below", x("between", [1, 10]), {"x": 0.99}, "false"),
    C("between-above", x("between", [1, 10]), {"x": 11}, "false"),
    C("between-bool", x("between", [0, 10]), {"x": True}, "error"),
    C("between-nan", x("between", [0, 10]), {"x": float("nan")}, "error"),
    C("between-null", x("between", [0, 10]), {"x": None}, "error"),
    C("between-text", x("between", [0, 10]), {"x": "five"}, "error"),
    # --- lengths -------------------------------------------------------------------------
    C("len-gt-string", x("length_greater_than", 3), {"x": "abcd"}, "true"),
    C("len-gt-string-no", x("length_greater_than", 3), {"x": "abc"}, "false"),
    C("len-gt-list", x("length_greater_than", 1), {"x": [1, 2]}, "true"),
    C("len-gt-object", x("length_greater_than", 1), {"x": {"a": 1}}, "false"),
    C("len-gt-number", x("length_greater_than", 1), {"x": 12345}, "error"),
    C("len-gt-null", x("length_greater_than", 1), {"x": None}, "error"),
    C("len-lt-string", x("length_less_than", 3), {"x": "ab"}, "true"),
    C("len-lt-string-no", x("length_less_than", 3), {"x": "abc"}, "false"),
    C("len-lt-empty-list", x("length_less_than", 1), {"x": []}, "true"),
    C("len-lt-bool", x("length_less_than", 1), {"x": False}, "error"),
    C("len-lt-missing", x("length_less_than", 1), {}, "error"),
    # --- exists --------------------------------------------------------------------------
    C("exists", x("exists", True), {"x": 1}, "true"),
    C("exists-missing", x("exists", True), {}, "false"),
    C("exists-null-is-present", x("exists", True), {"x": None}, "true"),
    C("exists-false-value", x("exists", True), {"x": False}, "true"),
    C("exists-empty-string", x("exists", True), {"x": ""}, "true"),
    C("not-exists", x("exists", False), {}, "true"),
    C("not-exists-present", x("exists", False), {"x": None}, "false"),
    C("exists-nested", {"field": "args.a.b", "exists": True}, {"a": {"b": 0}}, "true"),
    C("exists-nested-missing", {"field": "args.a.b", "exists": True}, {"a": {}}, "false"),
    C("exists-nested-parent-missing", {"field": "args.a.b", "exists": True}, {}, "false"),
    C("exists-index", {"field": "args.l[2]", "exists": True}, {"l": [1, 2]}, "false"),
    C("exists-context", {"field": "context.k", "exists": True}, {}, "true", context={"k": 1}),
    C("exists-env-unset", {"field": "env", "exists": True}, {}, "false"),
    C("exists-user", {"field": "principal.user", "exists": True}, {}, "true", user="u"),
    C("exists-user-unset", {"field": "principal.user", "exists": True}, {}, "false"),
    # --- path_within (lexical, absolute only) --------------------------------------------
    C("path-within", x("path_within", "/srv/data"), {"x": "/srv/data/a.txt"}, "true"),
    C("path-within-base-itself", x("path_within", "/srv/data"), {"x": "/srv/data"}, "true"),
    C("path-within-base-slash", x("path_within", "/srv/data/"), {"x": "/srv/data/a"}, "true"),
    C("path-within-sibling-prefix", x("path_within", "/srv/data"), {"x": "/srv/database"}, "false"),
    C(
        "path-within-dotdot-escape",
        x("path_within", "/srv/data"),
        {"x": "/srv/data/../etc"},
        "false",
    ),
    C(
        "path-within-dotdot-deep-escape",
        x("path_within", "/srv/data"),
        {"x": "/srv/data/a/../../../etc/passwd"},
        "false",
    ),
    C(
        "path-within-dotdot-inside",
        x("path_within", "/srv/data"),
        {"x": "/srv/data/a/../b"},
        "true",
    ),
    C("path-within-dotdot-above-root", x("path_within", "/srv"), {"x": "/../../srv/x"}, "true"),
    C("path-within-double-slash", x("path_within", "/srv/data"), {"x": "//srv//data//x"}, "true"),
    C("path-within-dot", x("path_within", "/srv/data"), {"x": "/srv/./data/./x"}, "true"),
    C("path-within-root", x("path_within", "/"), {"x": "/anything/at/all"}, "true"),
    C("path-within-any-of", x("path_within", ["/a", "/b"]), {"x": "/b/c"}, "true"),
    C("path-within-case-sensitive", x("path_within", "/srv/Data"), {"x": "/srv/data/x"}, "false"),
    C(
        "path-within-ignore-case",
        x("path_within", "/srv/Data", ignore_case=True),
        {"x": "/SRV/data/x"},
        "true",
    ),
    C("path-within-relative", x("path_within", "/srv/data"), {"x": "data/x"}, "error"),
    C("path-within-dot-relative", x("path_within", "/srv/data"), {"x": "./x"}, "error"),
    C("path-within-empty", x("path_within", "/srv/data"), {"x": ""}, "error"),
    C(
        "path-within-nul",
        x("path_within", "/srv/data"),
        {"x": "/srv/data/a\x00/../../etc"},
        "error",
    ),
    C("path-within-number", x("path_within", "/srv"), {"x": 1}, "error"),
    C("path-within-null", x("path_within", "/srv"), {"x": None}, "error"),
    # --- url_host_in ---------------------------------------------------------------------
    C("url-host", x("url_host_in", ["example.com"]), {"x": "https://example.com/a"}, "true"),
    C("url-host-no", x("url_host_in", ["example.com"]), {"x": "https://evil.com/a"}, "false"),
    C("url-host-case", x("url_host_in", ["Example.COM"]), {"x": "https://EXAMPLE.com"}, "true"),
    C(
        "url-host-port",
        x("url_host_in", ["example.com"]),
        {"x": "http://example.com:8080/"},
        "true",
    ),
    C(
        "url-host-userinfo",
        x("url_host_in", ["example.com"]),
        {"x": "https://example.com@evil.com/"},
        "false",
    ),
    C(
        "url-host-trailing-dot",
        x("url_host_in", ["example.com"]),
        {"x": "https://example.com./"},
        "true",
    ),
    C(
        "url-host-suffix-trick",
        x("url_host_in", ["example.com"]),
        {"x": "https://notexample.com"},
        "false",
    ),
    C(
        "url-wildcard-sub",
        x("url_host_in", ["*.example.com"]),
        {"x": "https://api.example.com"},
        "true",
    ),
    C(
        "url-wildcard-deep",
        x("url_host_in", ["*.example.com"]),
        {"x": "https://a.b.example.com"},
        "true",
    ),
    C(
        "url-wildcard-not-apex",
        x("url_host_in", ["*.example.com"]),
        {"x": "https://example.com"},
        "false",
    ),
    C(
        "url-wildcard-not-suffix",
        x("url_host_in", ["*.example.com"]),
        {"x": "https://badexample.com"},
        "false",
    ),
    C("url-no-scheme", x("url_host_in", ["www.x.com"]), {"x": "www.x.com/p?q=1"}, "true"),
    C("url-no-scheme-no", x("url_host_in", ["x.com"]), {"x": "www.x.com/p"}, "false"),
    C("url-no-scheme-port", x("url_host_in", ["x.com"]), {"x": "x.com:8443/p"}, "true"),
    C(
        "url-idna-unicode-pattern",
        x("url_host_in", ["bücher.example"]),
        {"x": "https://xn--bcher-kva.example/"},
        "true",
    ),
    C(
        "url-idna-unicode-value",
        x("url_host_in", ["xn--bcher-kva.example"]),
        {"x": "https://bücher.example/"},
        "true",
    ),
    C(
        "url-idna-both-unicode",
        x("url_host_in", ["*.bücher.example"]),
        {"x": "https://www.BÜCHER.example/x"},
        "true",
    ),
    C(
        "url-idna-lookalike",
        x("url_host_in", ["bucher.example"]),
        {"x": "https://bücher.example/"},
        "false",
    ),
    C("url-ip-literal", x("url_host_in", ["10.0.0.1"]), {"x": "http://10.0.0.1/x"}, "true"),
    C("url-ipv6-literal", x("url_host_in", ["::1"]), {"x": "http://[::1]:80/x"}, "true"),
    C(
        "url-list-ref",
        x("url_host_in", {"list": "domains"}),
        {"x": "https://a.example.org"},
        "true",
        lists=LISTS,
    ),
    C(
        "url-list-ref-apex-excluded",
        x("url_host_in", {"list": "domains"}),
        {"x": "https://example.org"},
        "false",
        lists=LISTS,
    ),
    C("url-javascript", x("url_host_in", ["example.com"]), {"x": "javascript:alert(1)"}, "error"),
    C("url-mailto", x("url_host_in", ["example.com"]), {"x": "mailto:a@example.com"}, "error"),
    C("url-data", x("url_host_in", ["example.com"]), {"x": "data:text/html,hi"}, "error"),
    C("url-empty-host", x("url_host_in", ["example.com"]), {"x": "https:///path"}, "error"),
    C(
        "url-backslash",
        x("url_host_in", ["example.com"]),
        {"x": "https://evil.com\\@example.com/"},
        "error",
    ),
    C("url-not-string", x("url_host_in", ["example.com"]), {"x": 1}, "error"),
    C("url-null", x("url_host_in", ["example.com"]), {"x": None}, "error"),
    # --- email_domain_in -----------------------------------------------------------------
    C("email", x("email_domain_in", ["example.com"]), {"x": "a@example.com"}, "true"),
    C("email-no", x("email_domain_in", ["example.com"]), {"x": "a@evil.com"}, "false"),
    C("email-case", x("email_domain_in", ["example.com"]), {"x": "A@EXAMPLE.COM"}, "true"),
    C(
        "email-display-name",
        x("email_domain_in", ["example.com"]),
        {"x": "Ann <ann@example.com>"},
        "true",
    ),
    C(
        "email-display-name-no",
        x("email_domain_in", ["example.com"]),
        {"x": "Ann Example <ann@evil.com>"},
        "false",
    ),
    C(
        "email-address-as-display-name",
        x("email_domain_in", ["example.com"]),
        {"x": "ann@example.com <ann@evil.com>"},
        "error",
    ),
    C(
        "email-quoted-display-name",
        x("email_domain_in", ["example.com"]),
        {"x": '"ann@evil.com" <ann@example.com>'},
        "true",
    ),
    C(
        "email-two-addresses",
        x("email_domain_in", ["example.com"]),
        {"x": "a@example.com, b@example.com"},
        "error",
    ),
    C(
        "email-two-addresses-mixed",
        x("email_domain_in", ["example.com"]),
        {"x": "a@example.com, b@evil.com"},
        "error",
    ),
    C("email-no-at", x("email_domain_in", ["example.com"]), {"x": "example.com"}, "error"),
    C("email-empty", x("email_domain_in", ["example.com"]), {"x": ""}, "error"),
    C(
        "email-wildcard-sub",
        x("email_domain_in", ["*.example.com"]),
        {"x": "a@mail.example.com"},
        "true",
    ),
    C(
        "email-wildcard-not-apex",
        x("email_domain_in", ["*.example.com"]),
        {"x": "a@example.com"},
        "false",
    ),
    C(
        "email-idna",
        x("email_domain_in", ["bücher.example"]),
        {"x": "a@xn--bcher-kva.example"},
        "true",
    ),
    C(
        "email-idna-unicode-value",
        x("email_domain_in", ["xn--bcher-kva.example"]),
        {"x": "a@bücher.example"},
        "true",
    ),
    C(
        "email-list-ref",
        x("email_domain_in", {"list": "domains"}),
        {"x": "a@example.com"},
        "true",
        lists=LISTS,
    ),
    C("email-not-string", x("email_domain_in", ["example.com"]), {"x": ["a@example.com"]}, "error"),
    # --- ip_in_cidr ----------------------------------------------------------------------
    C("ip", x("ip_in_cidr", "10.0.0.0/8"), {"x": "10.1.2.3"}, "true"),
    C("ip-no", x("ip_in_cidr", "10.0.0.0/8"), {"x": "11.1.2.3"}, "false"),
    C("ip-any-of", x("ip_in_cidr", ["10.0.0.0/8", "192.168.0.0/16"]), {"x": "192.168.1.1"}, "true"),
    C("ip-single-host", x("ip_in_cidr", "127.0.0.1"), {"x": "127.0.0.1"}, "true"),
    C("ip-v6", x("ip_in_cidr", "fd00::/8"), {"x": "fd12::1"}, "true"),
    C("ip-v6-case", x("ip_in_cidr", "FD00::/8"), {"x": "FD12::1"}, "true"),
    C("ip-v6-bracketed", x("ip_in_cidr", "::1/128"), {"x": "[::1]"}, "true"),
    C("ip-v4-mapped-v6", x("ip_in_cidr", "10.0.0.0/8"), {"x": "::ffff:10.1.2.3"}, "true"),
    C("ip-v4-mapped-v6-no", x("ip_in_cidr", "10.0.0.0/8"), {"x": "::ffff:11.1.2.3"}, "false"),
    C(
        "ip-mapped-cidr-mapped-value",
        x("ip_in_cidr", "::ffff:10.0.0.0/104"),
        {"x": "::ffff:10.1.2.3"},
        "true",
    ),
    C("ip-mapped-cidr-v4-value", x("ip_in_cidr", "::ffff:10.0.0.0/104"), {"x": "10.1.2.3"}, "true"),
    C("ip-mapped-cidr-no", x("ip_in_cidr", "::ffff:10.0.0.0/104"), {"x": "11.1.2.3"}, "false"),
    C("ip-v4-vs-v6-net", x("ip_in_cidr", "fd00::/8"), {"x": "10.0.0.1"}, "false"),
    C("ip-not-an-ip", x("ip_in_cidr", "10.0.0.0/8"), {"x": "10.0.0.0.1"}, "error"),
    C("ip-hostname", x("ip_in_cidr", "10.0.0.0/8"), {"x": "localhost"}, "error"),
    C("ip-number", x("ip_in_cidr", "10.0.0.0/8"), {"x": 167772161}, "error"),
    C("ip-null", x("ip_in_cidr", "10.0.0.0/8"), {"x": None}, "error"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_operator(case: Case) -> None:
    assert evaluate(case.cond, case.args, lists=case.lists, **case.call) == case.expect


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# --- time_between / weekday_in ----------------------------------------------------------

PARIS_NIGHT = {"from": "22:00", "to": "06:00", "timezone": "Europe/Paris"}
OFFICE = {"from": "09:00", "to": "17:00", "timezone": "America/New_York"}


@pytest.mark.parametrize(
    ("window", "now", "expect"),
    [
        # 2024-06-03 is a Monday; Paris is UTC+2 in June, New York UTC-4.
        (PARIS_NIGHT, datetime(2024, 6, 3, 21, 30, tzinfo=UTC), "true"),  # 23:30 Paris
        (PARIS_NIGHT, datetime(2024, 6, 3, 1, 0, tzinfo=UTC), "true"),  # 03:00 Paris
        (PARIS_NIGHT, datetime(2024, 6, 3, 19, 59, tzinfo=UTC), "false"),  # 21:59 Paris
        (PARIS_NIGHT, datetime(2024, 6, 3, 20, 0, tzinfo=UTC), "true"),  # 22:00 inclusive
        (PARIS_NIGHT, datetime(2024, 6, 3, 4, 0, tzinfo=UTC), "false"),  # 06:00 exclusive
        (PARIS_NIGHT, datetime(2024, 6, 3, 12, 0, tzinfo=UTC), "false"),
        # Winter: Paris is UTC+1, so 21:30 UTC is 22:30 there.
        (PARIS_NIGHT, datetime(2024, 1, 8, 21, 30, tzinfo=UTC), "true"),
        (PARIS_NIGHT, datetime(2024, 1, 8, 20, 30, tzinfo=UTC), "false"),
        (OFFICE, datetime(2024, 6, 3, 13, 0, tzinfo=UTC), "true"),  # 09:00 New York
        (OFFICE, datetime(2024, 6, 3, 12, 59, tzinfo=UTC), "false"),
        (OFFICE, datetime(2024, 6, 3, 21, 0, tzinfo=UTC), "false"),  # 17:00 exclusive
        # A non-UTC aware clock value is converted, not read as local wall time.
        (OFFICE, datetime(2024, 6, 3, 10, 0, tzinfo=timezone(timedelta(hours=-3))), "true"),
        ({"from": "09:00", "to": "17:00"}, datetime(2024, 6, 3, 9, 0, tzinfo=UTC), "true"),
        (["09:00", "17:00", "UTC"], datetime(2024, 6, 3, 17, 0, tzinfo=UTC), "false"),
    ],
)
def test_time_between_on_now(window: Any, now: datetime, expect: Outcome) -> None:
    cond = {"field": "now", "time_between": window}
    assert evaluate(cond, now=now) == expect


def test_time_between_uses_the_injected_clock() -> None:
    from engine_helpers import call, probe_veto

    cond = {"field": "now", "time_between": PARIS_NIGHT}
    night = probe_veto(cond, clock=lambda: datetime(2024, 6, 3, 23, 0, tzinfo=UTC))
    noon = probe_veto(cond, clock=lambda: datetime(2024, 6, 3, 10, 0, tzinfo=UTC))
    assert night.decide(call()).effect.value == "deny"
    assert noon.decide(call()).effect.value == "allow"
    # ToolCall.now overrides the clock for one call.
    assert noon.decide(call(now=datetime(2024, 6, 3, 23, 0, tzinfo=UTC))).effect.value == "deny"


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("2024-06-03T23:30:00+02:00", "true"),
        ("2024-06-03T21:30:00Z", "true"),
        ("2024-06-03T12:00:00Z", "false"),
        ("2024-06-03T23:30:00", "error"),  # no offset: ambiguous
        ("tonight", "error"),
        (1717450200, "error"),
        (None, "error"),
    ],
)
def test_time_between_on_an_argument(value: Any, expect: Outcome) -> None:
    cond = {"field": "args.x", "time_between": PARIS_NIGHT}
    assert evaluate(cond, {"x": value}) == expect


@pytest.mark.parametrize(
    ("days", "now", "expect"),
    [
        (["mon"], datetime(2024, 6, 3, 12, 0, tzinfo=UTC), "true"),
        (["Monday"], datetime(2024, 6, 3, 12, 0, tzinfo=UTC), "true"),
        (["tue", "wed"], datetime(2024, 6, 3, 12, 0, tzinfo=UTC), "false"),
        (["sat", "sun"], datetime(2024, 6, 8, 0, 30, tzinfo=UTC), "true"),
        # Sunday 23:30 UTC is already Monday in Tokyo.
        (
            {"days": ["mon"], "timezone": "Asia/Tokyo"},
            datetime(2024, 6, 9, 23, 30, tzinfo=UTC),
            "true",
        ),
        (
            {"days": ["sun"], "timezone": "Asia/Tokyo"},
            datetime(2024, 6, 9, 23, 30, tzinfo=UTC),
            "false",
        ),
        # Monday 01:00 UTC is still Sunday in Los Angeles.
        (
            {"days": ["sun"], "timezone": "America/Los_Angeles"},
            datetime(2024, 6, 3, 1, 0, tzinfo=UTC),
            "true",
        ),
    ],
)
def test_weekday_in(days: Any, now: datetime, expect: Outcome) -> None:
    assert evaluate({"field": "now", "weekday_in": days}, now=now) == expect


def test_weekday_in_on_a_bad_value_is_an_error() -> None:
    assert evaluate({"field": "args.x", "weekday_in": ["mon"]}, {"x": "someday"}) == "error"


# --- operands that can never work are load errors ---------------------------------------


@pytest.mark.parametrize(
    ("cond", "message"),
    [
        (x("greater_than", "abc"), "expected a number: the string 'abc' is not a number"),
        (x("greater_than", True), "expected a number: booleans are not numbers"),
        (x("between", [1]), "expected [low, high]"),
        (x("in", "a"), "expected a list (or {list: NAME})"),
        (x("length_greater_than", -1), "expected a non-negative integer"),
        (x("length_less_than", "3"), "expected a non-negative integer"),
        (x("exists", "yes"), "expected true or false"),
        (x("matches", "a(?=b)"), "invalid regular expression 'a(?=b)' (RE2 syntax)"),
        (x("matches", []), "expected an RE2 regular expression or a non-empty list of them"),
        (x("starts_with", 1), "expected a string, got a int"),
        (x("glob", "a[]"), "invalid glob 'a[]'"),
        (x("path_within", "relative/dir"), "'relative/dir' is not an absolute path"),
        (x("path_within", "/srv/\x00"), "path contains a NUL byte"),
        (x("url_host_in", ["https://example.com/"]), "invalid host pattern"),
        (x("email_domain_in", ["*.*.example.com"]), "invalid host pattern"),
        (x("ip_in_cidr", "10.0.0.0/33"), "invalid CIDR '10.0.0.0/33'"),
        (x("time_between", {"from": "9am", "to": "17:00"}), "from must be a time like '09:00'"),
        (x("time_between", {"from": "09:00"}), "expected both 'from' and 'to'"),
        (x("time_between", {**OFFICE, "timezone": "Mars/Olympus"}), "unknown timezone"),
        (x("weekday_in", ["funday"]), "unknown weekday 'funday'"),
        (x("contains", []), "expected a value or a non-empty list of values"),
        (x("in", {"list": "nope"}), "unknown list 'nope'"),
    ],
)
def test_bad_operand_is_a_load_error(cond: dict[str, Any], message: str) -> None:
    from engine_helpers import probe_veto

    with pytest.raises(PolicyError) as info:
        probe_veto(cond)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "op", ["greater_than", "between", "length_less_than", "exists", "time_between", "weekday_in"]
)
def test_ignore_case_on_a_non_string_operator_is_a_load_error(op: str) -> None:
    from engine_helpers import probe_veto

    operand: Any = {
        "greater_than": 1,
        "between": [1, 2],
        "length_less_than": 1,
        "exists": True,
        "time_between": OFFICE,
        "weekday_in": ["mon"],
    }[op]
    with pytest.raises(PolicyError, match=f"ignore_case does not apply to '{op}'"):
        probe_veto(x(op, operand, ignore_case=True))


@pytest.mark.parametrize("op", ["url_host_in", "email_domain_in", "ip_in_cidr"])
def test_ignore_case_is_accepted_where_comparison_is_already_case_insensitive(op: str) -> None:
    from engine_helpers import probe_veto

    operand = "10.0.0.0/8" if op == "ip_in_cidr" else ["example.com"]
    probe_veto(x(op, operand, ignore_case=True))


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        ("{field: args.x, greater_than: .inf}", "expected a number: inf is not a finite number"),
        ("{field: args.x, less_than: -.inf}", "expected a number: -inf is not a finite number"),
        ("{field: args.x, between: [0, .nan]}", "expected a number: nan is not a finite number"),
        ("{field: args.x, equals: .nan}", "NaN and Infinity cannot be compared"),
        ("{field: args.x, in: [1, .inf]}", "NaN and Infinity cannot be compared"),
    ],
)
def test_nan_and_infinity_operands_are_load_errors(leaf: str, message: str) -> None:
    text = f"version: 1\nname: p\nrules:\n  - id: a\n    effect: deny\n    tools: [t]\n    if: {leaf}\n"
    with pytest.raises(PolicyError, match=re.escape(message)):
        Veto.from_yaml(text)


def test_yaml_source_values_keep_their_types() -> None:
    """YAML 1.2 scalars: `no`, `17:00` stay strings; `.nan` is refused at load."""
    text = """
version: 1
name: yaml-types
default: allow
rules:
  - id: a
    effect: deny
    tools: [t]
    if: {any: [{field: args.x, equals: no}, {field: args.y, equals: "17:00"}, {field: args.z, equals: 1e3}]}
"""
    veto = Veto.from_yaml(text)
    from engine_helpers import call

    assert veto.decide(call(args={"x": "no", "y": "", "z": 0})).effect.value == "deny"
    assert veto.decide(call(args={"x": "", "y": "17:00", "z": 0})).effect.value == "deny"
    assert veto.decide(call(args={"x": False, "y": "", "z": 0})).effect.value == "allow"
    assert veto.decide(call(args={"x": "", "y": "", "z": "1000"})).effect.value == "deny"
