"""Validated policy values without pydantic: what the loader hands to the compiler.

The pydantic models in ``schema.py`` are the one definition of the policy format:
they validate a file and publish the JSON Schema. What they produce is converted
here, generically, into :class:`Record` values (one per model instance, the same
field names and values), and everything after validation (merging ``extends`` and
overlays, compiling, linting, the revision hash) reads records. So a policy whose
validated form is already known (the policy cache, ``cache.py``) is compiled without
importing pydantic at all, and a field added to the schema needs no change here.

For the type checker a record *is* its model (``from_model`` returns the model's
type), so field names stay checked against the schema; at run time only attribute
access, equality and :func:`json_form` exist (no ``model_dump`` and friends).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Record", "as_dict", "decode", "encode", "from_model", "json_form", "replace"]

M = TypeVar("M")


class Record:
    """One validated model instance as an immutable value: ``record.field`` reads a field."""

    # The fields are the instance's __dict__: reading one is a plain attribute lookup
    # (compiling a 10,000-rule policy reads a quarter of a million of them).
    __slots__ = ("__dict__", "_aliases", "_json", "_kind")
    _kind: str
    _aliases: dict[str, str]
    _json: dict[str, Any] | None

    def __init__(
        self,
        kind: str,
        values: dict[str, Any],
        *,
        aliases: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> None:
        object.__setattr__(self, "__dict__", values)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_aliases", aliases or {})
        object.__setattr__(self, "_json", json)

    @property
    def _values(self) -> dict[str, Any]:
        return self.__dict__

    def __getattr__(self, name: str) -> Any:  # only called for a name that is no field
        if name.startswith("_"):  # slots not set yet (copy, pickle)
            raise AttributeError(name)
        raise AttributeError(f"{self._kind} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._kind} is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self._kind == other._kind and self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # like a frozen model with list fields

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy and pickle
        return (_rebuild, (self._kind, self._values, self._aliases, self._json))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"{self._kind}({fields})"


def _rebuild(
    kind: str, values: dict[str, Any], aliases: dict[str, str], json: dict[str, Any] | None
) -> Record:
    return Record(kind, values, aliases=aliases, json=json)


def from_model(model: M) -> M:
    """A validated pydantic model (and every model inside it) as records. The record of
    a model keeps pydantic's own JSON form of it, so revisions hash what they always did.
    A field whose type can hold no model (a condition, a list of names) is taken as
    pydantic left it: validated values are never changed afterwards."""
    from pydantic import BaseModel

    dumped = cast("BaseModel", model).model_dump(mode="json", by_alias=True)
    kinds: dict[type[BaseModel], tuple[str, dict[str, str], frozenset[str]]] = {}

    def convert(value: Any, json: Any) -> Any:
        if isinstance(value, BaseModel):
            cls = type(value)
            if cls not in kinds:
                fields = cls.model_fields
                kinds[cls] = (
                    cls.__name__,
                    {n: f.alias for n, f in fields.items() if f.alias and f.alias != n},
                    frozenset(n for n, f in fields.items() if _may_hold_model(f.annotation)),
                )
            kind, aliases, nested = kinds[cls]
            return Record(
                kind,
                {  # a model's fields are its __dict__ (extra keys are forbidden)
                    n: convert(v, json.get(aliases.get(n, n))) if n in nested else v
                    for n, v in value.__dict__.items()
                },
                aliases=aliases,
                json=json,
            )
        if isinstance(value, list):
            jsons = (
                json if isinstance(json, list) and len(json) == len(value) else [None] * len(value)
            )
            return [convert(v, j) for v, j in zip(value, jsons, strict=True)]
        if isinstance(value, dict):
            mapping = json if isinstance(json, dict) else {}
            return {
                k: convert(v, mapping.get(k) if isinstance(k, str) else None)
                for k, v in value.items()
            }
        return value

    return cast("M", convert(model, dumped))


def _may_hold_model(annotation: Any) -> bool:
    """Whether a field of this type can hold a pydantic model (in a list, dict, union...)."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_may_hold_model(arg) for arg in get_args(annotation))


def replace(record: M, **changes: Any) -> M:
    """A copy of ``record`` with some fields changed (``model_copy(update=...)``)."""
    old = cast("Record", record)
    unknown = set(changes) - set(old._values)
    if unknown:
        raise TypeError(f"{old._kind} has no field {sorted(unknown)[0]!r}")
    return cast("M", Record(old._kind, {**old._values, **changes}, aliases=old._aliases))


def json_form(value: Any, *, exclude: frozenset[str] = frozenset()) -> Any:
    """What ``model_dump(mode="json", by_alias=True, exclude=...)`` gave: pydantic's own
    form for validated records, assembled field by field for merged ones."""
    if isinstance(value, Record):
        if value._json is not None and not exclude:
            return value._json
        return {
            value._aliases.get(name, name): json_form(v)
            for name, v in value._values.items()
            if name not in exclude
        }
    if isinstance(value, list):
        return [json_form(v) for v in value]
    if isinstance(value, dict):
        return {k: json_form(v) for k, v in value.items()}
    return value


def as_dict(record: Any) -> dict[str, Any]:
    """The fields of a record by name (``model_dump()``), nested records included."""

    def plain(value: Any) -> Any:
        if isinstance(value, Record):
            return {k: plain(v) for k, v in value._values.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    result: dict[str, Any] = plain(record)
    return result


# --- a lossless JSON encoding (the policy cache stores records this way) ---------------
#
# Every JSON object in the encoding is a tag, so nothing in the data can pass for one:
# {"r": kind, "a": aliases, "j": pydantic's JSON form, "v": {field: value}} is a record,
# {"d": [[key, value], ...]} a mapping (keys may be numbers, booleans or null in
# condition data). Arrays are lists; strings, numbers, booleans and null are themselves.

_SCALARS = (str, int, float, bool, type(None))


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data; TypeError for anything a validated policy never holds."""
    if isinstance(value, Record):
        return {
            "r": value._kind,
            "a": value._aliases,
            "j": value._json,
            "v": {k: encode(v) for k, v in value._values.items()},
        }
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`; ValueError on anything :func:`encode` never writes."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if set(data) == {"d"} and isinstance(data["d"], list):
            out: dict[Any, Any] = {}
            for pair in data["d"]:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise ValueError("malformed mapping")
                key = decode(pair[0])
                if not isinstance(key, _SCALARS):
                    raise ValueError("malformed mapping key")
                out[key] = decode(pair[1])
            return out
        if set(data) == {"r", "a", "j", "v"}:
            kind, aliases, json, values = data["r"], data["a"], data["j"], data["v"]
            if not (
                isinstance(kind, str)
                and isinstance(aliases, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items())
                and (json is None or isinstance(json, dict))
                and isinstance(values, dict)
            ):
                raise ValueError("malformed record")
            return Record(
                kind, {k: decode(v) for k, v in values.items()}, aliases=aliases, json=json
            )
        raise ValueError("malformed value")
    if isinstance(data, _SCALARS):
        return data
    raise ValueError("malformed value")
