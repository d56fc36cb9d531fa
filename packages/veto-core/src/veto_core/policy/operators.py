"""Condition operators: ``compile(operand, ignore_case=...) -> predicate(value) -> bool``.

A predicate raises ``EvalError`` when it cannot decide (wrong type, non-numeric
string in a numeric comparison, unparsable URL ...); the rule then fails closed.
``compile`` raises ``OperandError`` for a bad operand, which becomes a load error.
Exact meanings follow DESIGN.md 2.1 ("Exact meanings where people disagree").
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
import operator as _op
import posixpath
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timezone
from typing import TYPE_CHECKING, Any, Protocol

import re2

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    import ada_url

__all__ = [
    "BUILTIN_OPERATORS",
    "CASE_INSENSITIVE_OPERATORS",
    "MAX_ADDRESS_CHARS",
    "MAX_STRING_BYTES",
    "NULL_ACCEPTING_OPERATORS",
    "EvalError",
    "OperandError",
    "Operator",
    "Predicate",
    "check_size",
    "glob_to_regex",
    "to_finite_float",
    "to_number",
    "values_equal",
]

Predicate = Callable[[Any], bool]


class Operator(Protocol):
    def __call__(self, operand: Any, *, ignore_case: bool = False) -> Predicate: ...


class EvalError(Exception):
    """A condition could not be evaluated; carries one message per failed leaf."""

    def __init__(self, *messages: str) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


class OperandError(ValueError):
    """An operand that can never work (bad regex, relative base path, ...)."""


# --- values ---------------------------------------------------------------------------

# ASCII digits only: a tool reading Arabic-Indic digits may not see the number the policy saw.
_NUMERIC = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$", re.ASCII)
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$", re.ASCII)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:60]!r}" + ("..." if len(value) > 60 else "")
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def to_number(value: Any) -> int | float:
    """The one checked numeric conversion (DESIGN.md 2.1 "Hostile values").

    Numbers and numeric strings -> a finite number; anything else is an EvalError:
    booleans, non-numeric strings, NaN/Infinity, and numeric strings whose value
    overflows (``"1e309"`` would otherwise read as Infinity and pass every bound).
    """
    t = type(value)
    if t is int:
        return int(value)
    if t is float:
        if math.isfinite(value):
            return float(value)
        raise EvalError(f"{value!r} is not a finite number")
    if t is bool:
        raise EvalError("booleans are not numbers")
    if isinstance(value, str):
        # float()/int() accept "nan", "inf", "1_000" and non-ASCII digits; the grammar refuses them.
        if not _NUMERIC.match(value):
            raise EvalError(f"{_describe(value)} is not a number")
        if _INTEGER.match(value):
            try:
                return int(value)
            except ValueError:  # more digits than int() will convert (sys.int_info)
                raise EvalError(f"{_describe(value)} has too many digits") from None
        number = float(value)
        if math.isfinite(number):
            return number
        raise EvalError(f"{_describe(value)} is not a finite number")
    if isinstance(value, bool):
        raise EvalError("booleans are not numbers")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return to_number(float(value))
    raise EvalError(f"expected a number, got {_describe(value)}")


def to_finite_float(value: Any) -> float:
    """``to_number`` as a float (for sums): an int too large for a float is an error."""
    number = to_number(value)
    try:
        result = float(number)
    except OverflowError:
        raise EvalError(f"{_describe(value)} is too large to be added up") from None
    if not math.isfinite(result):  # pragma: no cover - float() of an int raises instead
        raise EvalError(f"{_describe(value)} is not a finite number")
    return result


#: Longest string any operator compares (DESIGN.md 2.1): no value makes a decision slow.
MAX_STRING_BYTES = 64 * 1024


def check_size(value: str) -> None:
    """EvalError for a string longer than 64 KiB in UTF-8 (cheap for short strings)."""
    n = len(value)
    if n > MAX_STRING_BYTES // 4 and (
        n > MAX_STRING_BYTES or len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES
    ):
        raise EvalError(f"a string of {n} characters is longer than 64 KiB")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equality_number(value: Any) -> int | float | None:
    """A value as a number for equality; None when it is not numeric at all (then it
    is simply unequal to a number). A numeric value that is not finite is an error."""
    if isinstance(value, str):
        return to_number(value) if _NUMERIC.match(value) else None
    if _is_number(value):
        return to_number(value)
    return None


def _fold(value: Any, ignore_case: bool) -> Any:
    return value.casefold() if ignore_case and isinstance(value, str) else value


def values_equal(a: Any, b: Any, ignore_case: bool = False) -> bool:
    """Equality with Veto's rules: booleans are not numbers; numeric strings equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) or _is_number(b):
        x, y = _equality_number(a), _equality_number(b)
        return x is not None and y is not None and x == y
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold() if ignore_case else a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(
            values_equal(x, y, ignore_case) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k], ignore_case) for k in a)
    return bool(a == b)


def _as_list(operand: Any) -> list[Any]:
    return list(operand) if isinstance(operand, list | tuple) else [operand]


def _strings(operand: Any, what: str) -> list[str]:
    items = _as_list(operand)
    if not items:
        raise OperandError(f"expected {what} or a non-empty list of them")
    for item in items:
        if not isinstance(item, str):
            raise OperandError(f"expected {what}, got {_describe(item)}")
    return items


def _need_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise EvalError(f"expected a string, got {_describe(value)}")


# --- equality and membership -----------------------------------------------------------


def op_equals(operand: Any, *, ignore_case: bool = False) -> Predicate:
    try:
        _equality_number(operand)
    except EvalError as exc:
        raise OperandError(f"{exc}: NaN and Infinity cannot be compared") from None
    if isinstance(operand, str) and not ignore_case:
        s = operand

        def eq_str(v: Any) -> bool:
            if type(v) is str:
                return v == s
            return values_equal(v, s)

        return eq_str
    return lambda v: values_equal(v, operand, ignore_case)


def op_not_equals(operand: Any, *, ignore_case: bool = False) -> Predicate:
    eq = op_equals(operand, ignore_case=ignore_case)
    return lambda v: not eq(v)


def op_in(operand: Any, *, ignore_case: bool = False) -> Predicate:
    if not isinstance(operand, list | tuple):
        raise OperandError("expected a list (or {list: NAME})")
    strings: set[str] = set()
    numbers: set[int | float] = set()
    numeric_strings: set[int | float] = set()
    bools: set[bool] = set()
    others: list[Any] = []
    has_null = False
    for item in operand:
        if isinstance(item, bool):
            bools.add(item)
        elif _is_number(item):
            if isinstance(item, float) and not math.isfinite(item):
                raise OperandError("NaN and Infinity cannot be compared")
            numbers.add(item)
        elif isinstance(item, str):
            strings.add(item.casefold() if ignore_case else item)
            if _NUMERIC.match(item):
                # A string that is not a finite number stays a string ("1e309" in a list of ids).
                with contextlib.suppress(EvalError):
                    numeric_strings.add(to_number(item))
        elif item is None:
            has_null = True
        else:
            others.append(item)

    def pred(v: Any) -> bool:
        t = type(v)
        if t is str:
            if (v.casefold() if ignore_case else v) in strings:
                return True
            return bool(numbers) and _NUMERIC.match(v) is not None and to_number(v) in numbers
        if t is bool:
            return v in bools
        if t is int or t is float:
            return to_number(v) in numbers or v in numeric_strings
        if v is None:
            return has_null
        if isinstance(v, list | tuple | Mapping):
            if others:
                return any(values_equal(v, o, ignore_case) for o in others)
            raise EvalError(f"expected a single value, got {_describe(v)} (use contains for lists)")
        return any(values_equal(v, o, ignore_case) for o in operand)

    return pred


def op_not_in(operand: Any, *, ignore_case: bool = False) -> Predicate:
    inside = op_in(operand, ignore_case=ignore_case)
    return lambda v: not inside(v)


# --- strings ---------------------------------------------------------------------------


def op_contains(operand: Any, *, ignore_case: bool = False) -> Predicate:
    needles = _as_list(operand)
    if not needles:
        raise OperandError("expected a value or a non-empty list of values")
    folded = [_fold(n, ignore_case) for n in needles]

    def pred(v: Any) -> bool:
        if isinstance(v, str):
            hay = _fold(v, ignore_case)
            for n in folded:
                if not isinstance(n, str):
                    raise EvalError(f"cannot look for {_describe(n)} inside a string")
                if n in hay:
                    return True
            return False
        if isinstance(v, list | tuple):
            return any(values_equal(x, n, ignore_case) for x in v for n in needles)
        raise EvalError(f"expected a string or a list, got {_describe(v)}")

    return pred


def op_starts_with(operand: Any, *, ignore_case: bool = False) -> Predicate:
    prefixes = tuple(_fold(s, ignore_case) for s in _strings(operand, "a string"))
    return lambda v: _fold(_need_str(v), ignore_case).startswith(prefixes)


def op_ends_with(operand: Any, *, ignore_case: bool = False) -> Predicate:
    suffixes = tuple(_fold(s, ignore_case) for s in _strings(operand, "a string"))
    return lambda v: _fold(_need_str(v), ignore_case).endswith(suffixes)


@functools.lru_cache(maxsize=1024)  # a policy repeats its patterns; compiled ones are immutable
def compile_re2(pattern: str, *, ignore_case: bool = False) -> Any:
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except UnicodeEncodeError:
        raise OperandError(f"regular expression {pattern[:80]!r} is not valid Unicode") from None
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):  # google-re2 reports its message as bytes
            detail = detail.decode("utf-8", "replace")
        raise OperandError(
            f"invalid regular expression {pattern!r} (RE2 syntax): {detail}"
        ) from None


def re2_tester(regex: Any) -> Callable[[str], bool]:
    """Yes/no search without building a Match object.

    ``re2._Regexp.search`` maps every byte offset back to a str offset to build
    a Match, which costs ~10x the match itself; a policy only needs the boolean.
    Uses the binding's lower-level ``Match`` when present (checked against the
    public API once), else the public ``search``.
    """
    low = getattr(regex, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if low is not None and anchor is not None:

        def test(text: str) -> bool:
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                raise EvalError("string is not valid Unicode (lone surrogate)") from None
            return bool(low.Match(anchor, data, 0, len(data))[0][0] != -1)

        try:
            probes = ("", "a", "ü\n", "DROP TABLE x", "x.y/z")
            if all(test(p) == (regex.search(p) is not None) for p in probes):
                return test
        except Exception:  # the binding changed: use the public API below
            pass
    return lambda text: regex.search(text) is not None


def op_matches(operand: Any, *, ignore_case: bool = False) -> Predicate:
    testers = [
        re2_tester(compile_re2(p, ignore_case=ignore_case))
        for p in _strings(operand, "an RE2 regular expression")
    ]
    if len(testers) == 1:
        test = testers[0]
        return lambda v: test(_need_str(v))
    return lambda v: any(t(_need_str(v)) for t in testers)


def glob_to_regex(pattern: str) -> str:
    """Anchored glob -> RE2 pattern. ``*`` matches anything (dots and slashes too), ``?`` one
    character, ``[abc]``/``[!abc]`` a class."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            while i + 1 < n and pattern[i + 1] == "*":
                i += 1
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 2 if i + 1 < n and pattern[i + 1] in "!^" else i + 1)
            if j == -1:
                raise OperandError(f"invalid glob {pattern!r}: '[' at position {i} is never closed")
            body = pattern[i + 1 : j]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            if not body:
                raise OperandError(f"invalid glob {pattern!r}: empty character class")
            body = body.replace("\\", "\\\\").replace("]", "\\]")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = j
        elif c == "]":
            raise OperandError(f"invalid glob {pattern!r}: ']' at position {i} has no opening '['")
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


@functools.lru_cache(maxsize=4096)  # a policy names the same glob in many rules
def compile_glob(pattern: str, *, ignore_case: bool = False) -> Any:
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    options.dot_nl = True
    try:
        return re2.compile(glob_to_regex(pattern), options)
    except UnicodeEncodeError:
        raise OperandError(f"glob {pattern[:80]!r} is not valid Unicode") from None
    except re2.error as exc:
        raise OperandError(f"invalid glob {pattern!r}: {exc}") from None


def op_glob(operand: Any, *, ignore_case: bool = False) -> Predicate:
    testers = [
        re2_tester(compile_glob(p, ignore_case=ignore_case)) for p in _strings(operand, "a glob")
    ]
    return lambda v: any(t(_need_str(v)) for t in testers)


# --- numbers and lengths ---------------------------------------------------------------


def _operand_number(operand: Any) -> int | float:
    try:
        return to_number(operand)
    except EvalError as exc:
        raise OperandError(f"expected a number: {exc}") from None


def _comparison(fn: Callable[[Any, Any], bool]) -> Operator:
    def compile_cmp(operand: Any, *, ignore_case: bool = False) -> Predicate:
        n = _operand_number(operand)

        def pred(v: Any) -> bool:
            t = type(v)
            if t is int or (t is float and math.isfinite(v)):
                return fn(v, n)
            return fn(to_number(v), n)

        return pred

    return compile_cmp


def op_between(operand: Any, *, ignore_case: bool = False) -> Predicate:
    if not isinstance(operand, list | tuple) or len(operand) != 2:
        raise OperandError("expected [low, high]")
    low, high = _operand_number(operand[0]), _operand_number(operand[1])
    if low > high:
        raise OperandError(f"low bound {low} is greater than high bound {high}")
    return lambda v: low <= to_number(v) <= high


def _length(value: Any) -> int:
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise EvalError(f"expected a string, list or object, got {_describe(value)}")


def _operand_length(operand: Any) -> int:
    if isinstance(operand, bool) or not isinstance(operand, int) or operand < 0:
        raise OperandError("expected a non-negative integer")
    return operand


def op_length_greater_than(operand: Any, *, ignore_case: bool = False) -> Predicate:
    n = _operand_length(operand)
    return lambda v: _length(v) > n


def op_length_less_than(operand: Any, *, ignore_case: bool = False) -> Predicate:
    n = _operand_length(operand)
    return lambda v: _length(v) < n


def op_exists(operand: Any, *, ignore_case: bool = False) -> Predicate:
    # The leaf handles missing fields for `exists`; a present value (null included) exists.
    if not isinstance(operand, bool):
        raise OperandError("expected true or false")
    return lambda v: operand


# --- paths -----------------------------------------------------------------------------


def normalize_path(path: str) -> str:
    """Lexical normalization: collapse '//', resolve '.' and '..' (never above '/')."""
    if "\x00" in path:
        raise EvalError("path contains a NUL byte")
    if "\\" in path:
        # A Windows host (or a tool that normalizes for one) reads it as a separator,
        # so '/srv/data/..\\..\\etc' would leave the directory this check saw.
        raise EvalError(f"path {path[:80]!r} contains a backslash")
    if not path.startswith("/"):
        raise EvalError(f"{path[:80]!r} is not an absolute path")
    collapsed = re.sub(r"/+", "/", path)
    return posixpath.normpath(collapsed)


def op_path_within(operand: Any, *, ignore_case: bool = False) -> Predicate:
    bases: list[str] = []
    for base in _strings(operand, "an absolute directory path"):
        try:
            norm = normalize_path(base)
        except EvalError as exc:
            raise OperandError(str(exc)) from None
        bases.append(_fold(norm, ignore_case))

    def pred(v: Any) -> bool:
        p = _fold(normalize_path(_need_str(v)), ignore_case)
        return any(p == b or p.startswith(b if b == "/" else b + "/") for b in bases)

    return pred


# --- hosts, emails, IPs ----------------------------------------------------------------
#
# Hosts are read the way browsers read them (WHATWG URL, DESIGN.md 2.1 "Hostile
# values"), with ada-url: the parser Node.js uses, fuzzed continuously, linear time.
# "2130706433", "0x7f.1", "0177.0.0.1" and "127.1" are all 127.0.0.1 to a browser, so
# they are to a deny list too; IPv4-mapped IPv6 compares as its IPv4, a zone id is
# dropped. Where RFC 3986 parsers and browsers disagree on where the host is
# (backslashes, control characters), the value is an error: the tool may use either.

#: Longest e-mail address or URL that is parsed at all (DESIGN.md 2.1).
MAX_ADDRESS_CHARS = 2048

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST_PORT = re.compile(r"^[^/?#@:\[\]\\]+:[0-9]*(?:[/?#]|$)")
_ZONE_ID = re.compile(r"^\[([0-9A-Fa-f:.]+)%[^\]]*\]")
_IPV4_TEXT = re.compile(r"^[0-9A-Fa-fXx.]+$")


def _address_text(value: str, what: str) -> str:
    if len(value) > MAX_ADDRESS_CHARS:
        raise EvalError(f"{what} of {len(value)} characters is longer than {MAX_ADDRESS_CHARS}")
    if _CONTROL.search(value):
        raise EvalError(f"{what} {value[:80]!r} contains a control character")
    return value


def _canonical_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Address(int(ip)))  # without a scope id
    return str(ip)


def _whatwg(url: str) -> tuple[str, str, ada_url.HostType]:
    """(hostname, port, host type) of a URL as a browser reads it; errors are EvalError."""
    import ada_url  # on use: only policies with URL, e-mail or IP operators need it

    try:
        parts = ada_url.parse_url(url, attributes=("hostname", "port", "host_type"))
    except ValueError:
        raise EvalError(f"URL {url[:80]!r} cannot be parsed") from None
    return str(parts["hostname"]), str(parts["port"]), parts["host_type"]


def _host_from_parts(hostname: str, host_type: ada_url.HostType) -> str:
    import ada_url

    if host_type == ada_url.HostType.IPV6:
        return _canonical_ip(ipaddress.IPv6Address(hostname.strip("[]")))
    if host_type == ada_url.HostType.IPV4:
        return str(ipaddress.IPv4Address(hostname))
    host = hostname[:-1] if hostname.endswith(".") else hostname
    if not host:
        raise EvalError("empty host name")
    return host


@functools.lru_cache(maxsize=8192)
def normalize_host(host: str) -> str:
    """A bare host (a policy pattern, an e-mail domain) -> its canonical form: the
    WHATWG host (lower case, IDNA/UTS #46, IPv4 forms resolved), IPs canonical."""
    host = host.strip()
    if not host or _CONTROL.search(host) or any(c in host for c in "/?#@\\ "):
        raise EvalError(f"invalid host name {host[:80]!r}")
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in inner:
        try:
            return _canonical_ip(ipaddress.IPv6Address(inner.split("%", 1)[0]))
        except ValueError:
            raise EvalError(f"invalid host name {host[:80]!r}") from None
    plain = _plain_dns_name(inner)
    if plain is not None:
        return plain
    return _whatwg_host(inner)


def _whatwg_host(inner: str) -> str:
    """The WHATWG host of a bare host name, by the WHATWG URL parser (the reference)."""
    hostname, _, host_type = _whatwg(f"https://{inner}/")
    return _host_from_parts(hostname, host_type)


#: Dot-separated labels of ASCII letters, digits and hyphens, one optional trailing dot,
#: no label starting "xn--" (Punycode, which the parser decodes and checks), and a last
#: label starting with a letter (so never an IPv4 number: decimal, 0x hex or octal).
_PLAIN_DNS_NAME = re.compile(
    r"(?!(?:[^.]*\.)*xn--)(?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*\.?", re.ASCII | re.IGNORECASE
)


def _plain_dns_name(host: str) -> str | None:
    """The WHATWG host of a plain ASCII DNS name (``Mail.Example.com.`` ->
    ``mail.example.com``) without loading the URL parser, or None for anything else
    (IDNA, Punycode, IPv4 forms, empty labels...): those go to :func:`_whatwg_host`.
    Policy host patterns are almost always plain names, and compiling a policy need not
    import ada_url for them (start-up, DESIGN.md 8); tests check this against the parser."""
    if _PLAIN_DNS_NAME.fullmatch(host) is None:
        return None
    return host.lower().removesuffix(".")


class HostPatterns:
    """``example.com`` matches exactly; ``*.example.com`` matches subdomains, not the apex."""

    def __init__(self, patterns: list[str]) -> None:
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for pattern in patterns:
            wildcard = pattern.startswith("*.")
            body = pattern[2:] if wildcard else pattern
            if "*" in body or "/" in body or "@" in body:
                raise OperandError(
                    f"invalid host pattern {pattern!r}: expected 'example.com' or '*.example.com'"
                )
            try:
                norm = normalize_host(body)
            except EvalError as exc:
                raise OperandError(f"invalid host pattern {pattern!r}: {exc}") from None
            if wildcard:
                self.suffixes.append("." + norm)
            else:
                self.exact.add(norm)
        self.suffix_tuple = tuple(self.suffixes)

    def __call__(self, host: str) -> bool:
        return host in self.exact or host.endswith(self.suffix_tuple)


def url_host(value: str) -> str:
    """Host of a URL (cached for the short values agents send again and again)."""
    return _url_host_cached(value) if len(value) <= _CACHED_CHARS else _url_host(value)


def email_domain(value: str) -> str:
    """Domain of exactly one address ('Name <a@b>' is one); anything else is an error."""
    return _email_cached(value) if len(value) <= _CACHED_CHARS else _email_domain(value)


_CACHED_CHARS = 256


def _url_host(value: str) -> str:
    """Host of a URL as a browser reads it; a URL with no scheme reads as https://value;
    no host, a port outside 1-65535 or an ambiguous authority is an error."""
    raw = _address_text(value, "URL").strip(" ")
    scheme = _SCHEME.match(raw)
    if scheme is None or (
        "://" not in raw and (_HOST_PORT.match(raw) or "." in raw[: scheme.end()])
    ):
        # "www.x.com/p", "x.com:8443/p", "127.1:81", "//x.com/p"
        raw = ("https:" if raw.startswith("//") else "https://") + raw
        scheme = _SCHEME.match(raw)
        assert scheme is not None
    rest = raw[scheme.end() :]
    slashes = len(rest) - len(rest.lstrip("/\\"))
    if slashes == 0:
        raise EvalError(f"URL {value[:80]!r} has no host")
    if rest[:slashes] != "//":
        # Browsers skip any run of slashes and backslashes before the host ("https:///h",
        # "https:\\\\h"); RFC 3986 parsers see no host or a different one.
        raise EvalError(f"URL {value[:80]!r} has an ambiguous host")
    authority_end = len(rest)
    for stop in "/?#":
        found = rest.find(stop, slashes)
        if found != -1:
            authority_end = min(authority_end, found)
    authority = rest[slashes:authority_end]
    if "\\" in authority or " " in authority:
        # RFC 3986 parsers keep a backslash in the host, browsers end the host there.
        raise EvalError(f"URL {value[:80]!r} has an ambiguous host")
    if "[" in authority:
        at = authority.rfind("@") + 1
        authority = authority[:at] + _ZONE_ID.sub(r"[\1]", authority[at:])
    url = raw[: scheme.end()] + rest[:slashes] + authority + rest[authority_end:]
    hostname, port, host_type = _whatwg(url)
    if not hostname:
        raise EvalError(f"URL {value[:80]!r} has no host")
    if port == "0":
        raise EvalError(f"URL {value[:80]!r} has port 0 (expected 1-65535)")
    return _host_from_parts(hostname, host_type)


def _host_operand(operand: Any) -> HostPatterns:
    return HostPatterns(_strings(operand, "a host name like 'example.com' or '*.example.com'"))


def op_url_host_in(operand: Any, *, ignore_case: bool = False) -> Predicate:
    patterns = _host_operand(operand)
    return lambda v: patterns(url_host(_need_str(v)))


# One address, strictly: `local@domain`, `<local@domain>` or `Display Name <local@domain>`
# (RFC 5322 without comments, groups or obsolete forms; RFC 6532 non-ASCII). RE2 keeps
# it linear: the stdlib header parser took seconds on 20,000 double quotes.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f\p{Z}\p{C}]"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_LOCAL = rf"(?:(?:{_ATEXT})+(?:\.(?:{_ATEXT})+)*|{_QUOTED})"
_LABEL = r"(?:[A-Za-z0-9-]|[^\x00-\x7f\p{Z}\p{C}])+"
_DOMAIN = rf"({_LABEL}(?:\.{_LABEL})*|\[[^\[\]\\]+\])"
_WORD = rf"(?:(?:{_ATEXT}|\.)+|{_QUOTED})"


@functools.cache
def _email_re() -> re2._Regexp:
    # Compiled on first use: most policies have no e-mail operator (start-up, DESIGN.md 8).
    return re2.compile(
        rf" *(?:{_LOCAL}@{_DOMAIN}|(?:{_WORD}(?: *{_WORD})*)? *<{_LOCAL}@{_DOMAIN}>) *"
    )


def _email_domain(value: str) -> str:
    _address_text(value, "email address")
    try:
        m = _email_re().fullmatch(value)
    except UnicodeEncodeError:
        raise EvalError("email address is not valid Unicode (lone surrogate)") from None
    if m is None:
        raise EvalError(f"{value[:80]!r} is not exactly one email address")
    domain = m.group(1) if m.group(1) is not None else m.group(2)
    if domain.startswith("["):  # a domain literal: [192.0.2.1] or [IPv6:2001:db8::1]
        literal = domain[1:-1]
        if literal[:5].lower() == "ipv6:":
            literal = f"[{literal[5:]}]"
        elif ":" in literal:
            raise EvalError(f"{value[:80]!r} has an invalid domain literal")
        return _canonical_ip(_ip(literal))
    return normalize_host(domain)


_url_host_cached = functools.lru_cache(maxsize=4096)(_url_host)
_email_cached = functools.lru_cache(maxsize=4096)(_email_domain)


def op_email_domain_in(operand: Any, *, ignore_case: bool = False) -> Predicate:
    patterns = _host_operand(operand)
    return lambda v: patterns(email_domain(_need_str(v)))


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address as a browser reads a host: IPv4 in any WHATWG spelling, IPv6 with
    an optional zone id (dropped); IPv4-mapped IPv6 is its IPv4."""
    text = _address_text(value, "IP address").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        if ":" in text:
            ip6 = ipaddress.IPv6Address(text.split("%", 1)[0])
            return ip6.ipv4_mapped or ipaddress.IPv6Address(int(ip6))
        if _IPV4_TEXT.match(text):
            import ada_url

            hostname, _, host_type = _whatwg(f"http://{text}/")
            if host_type == ada_url.HostType.IPV4:
                return ipaddress.IPv4Address(hostname)
    except (ValueError, EvalError):
        pass
    raise EvalError(f"{value[:80]!r} is not an IP address")


def op_ip_in_cidr(operand: Any, *, ignore_case: bool = False) -> Predicate:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for cidr in _strings(operand, "a CIDR like '10.0.0.0/8'"):
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise OperandError(f"invalid CIDR {cidr!r}: {exc}") from None
        networks.append(network)
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_V4_MAPPED):
            # Values are compared in IPv4 form when IPv4-mapped (::ffff:a.b.c.d), so a
            # mapped CIDR must cover the same IPv4 addresses (else a deny rule is bypassed).
            networks.append(
                ipaddress.IPv4Network(
                    (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
                )
            )
    return lambda v: any(_ip(_need_str(v)) in n for n in networks)


_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


# --- time ------------------------------------------------------------------------------

_DAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
    "thu": 3, "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5,
    "sun": 6, "sunday": 6,
}  # fmt: skip


def _zone(name: Any) -> ZoneInfo | timezone:
    if name is None or name == "UTC":
        return UTC
    if not isinstance(name, str):
        raise OperandError("timezone must be an IANA name like 'Europe/Paris'")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # on use: a time operator with a zone

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise OperandError(
            f"unknown timezone {name!r} (expected an IANA name like 'Europe/Paris')"
        ) from None


def to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise EvalError(f"{value[:80]!r} is not an ISO-8601 time") from None
    else:
        raise EvalError(f"expected a time, got {_describe(value)}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise EvalError("time has no timezone offset")
    return dt


def _clock_time(value: Any, what: str) -> time:
    if not isinstance(value, str):
        raise OperandError(f"{what} must be a quoted time like '09:00', got {_describe(value)}")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise OperandError(f"{what} must be a time like '09:00', got {value!r}") from None


def op_time_between(operand: Any, *, ignore_case: bool = False) -> Predicate:
    if isinstance(operand, list | tuple) and len(operand) in (2, 3):
        operand = dict(zip(("from", "to", "timezone"), operand, strict=False))
    if not isinstance(operand, Mapping):
        raise OperandError("expected {from: 'HH:MM', to: 'HH:MM', timezone: 'Area/City'}")
    unknown = set(operand) - {"from", "to", "timezone"}
    if unknown:
        raise OperandError(f"unknown key {sorted(unknown)[0]!r} (expected from, to, timezone)")
    if "from" not in operand or "to" not in operand:
        raise OperandError("expected both 'from' and 'to'")
    start = _clock_time(operand["from"], "from")
    end = _clock_time(operand["to"], "to")
    zone = _zone(operand.get("timezone"))

    def pred(v: Any) -> bool:
        local = to_datetime(v).astimezone(zone).time().replace(tzinfo=None)
        if start <= end:
            return start <= local < end
        return local >= start or local < end  # a window across midnight

    return pred


def op_weekday_in(operand: Any, *, ignore_case: bool = False) -> Predicate:
    zone_name = None
    days = operand
    if isinstance(operand, Mapping):
        unknown = set(operand) - {"days", "timezone"}
        if unknown or "days" not in operand:
            raise OperandError("expected a list of days or {days: [...], timezone: 'Area/City'}")
        days, zone_name = operand["days"], operand.get("timezone")
    wanted: set[int] = set()
    for day in _strings(days, "a weekday name like 'mon' or 'monday'"):
        if day.lower() not in _DAYS:
            raise OperandError(
                f"unknown weekday {day!r} (expected mon, tue, wed, thu, fri, sat, sun)"
            )
        wanted.add(_DAYS[day.lower()])
    zone = _zone(zone_name)
    return lambda v: to_datetime(v).astimezone(zone).weekday() in wanted


BUILTIN_OPERATORS: dict[str, Operator] = {
    "equals": op_equals,
    "not_equals": op_not_equals,
    "in": op_in,
    "not_in": op_not_in,
    "contains": op_contains,
    "starts_with": op_starts_with,
    "ends_with": op_ends_with,
    "matches": op_matches,
    "glob": op_glob,
    "greater_than": _comparison(_op.gt),
    "greater_or_equal": _comparison(_op.ge),
    "less_than": _comparison(_op.lt),
    "less_or_equal": _comparison(_op.le),
    "between": op_between,
    "length_greater_than": op_length_greater_than,
    "length_less_than": op_length_less_than,
    "exists": op_exists,
    "path_within": op_path_within,
    "url_host_in": op_url_host_in,
    "email_domain_in": op_email_domain_in,
    "ip_in_cidr": op_ip_in_cidr,
    "time_between": op_time_between,
    "weekday_in": op_weekday_in,
}

#: Operators where ``ignore_case`` changes the comparison.
CASE_INSENSITIVE_OPERATORS = frozenset(
    {
        "equals",
        "not_equals",
        "in",
        "not_in",
        "contains",
        "starts_with",
        "ends_with",
        "matches",
        "glob",
        "path_within",
    }
)
#: Host/email/IP operators are always case-insensitive; ``ignore_case`` is accepted and changes nothing.
ALWAYS_CASE_INSENSITIVE = frozenset({"url_host_in", "email_domain_in", "ip_in_cidr"})
#: Operators defined on JSON null; every other operator errors on null.
NULL_ACCEPTING_OPERATORS = frozenset({"exists", "equals", "not_equals"})
