"""The policy language: schema, loader, condition compiler, operators."""

from typing import TYPE_CHECKING

from veto_core._lazy import lazy_exports

if TYPE_CHECKING:
    from .compiler import CompiledPolicy, CompiledRule, compile_policy
    from .errors import PolicyError, Problem
    from .loader import LoadedPolicy, canonical_json, load_policy_file, load_policy_text
    from .schema import policy_json_schema

__all__ = [
    "CompiledPolicy",
    "CompiledRule",
    "LoadedPolicy",
    "PolicyError",
    "Problem",
    "canonical_json",
    "compile_policy",
    "load_policy_file",
    "load_policy_text",
    "policy_json_schema",
]

# Imported on first use: `veto` must start fast (DESIGN.md 8).
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        **dict.fromkeys(("CompiledPolicy", "CompiledRule", "compile_policy"), ".compiler"),
        **dict.fromkeys(("PolicyError", "Problem"), ".errors"),
        **dict.fromkeys(
            ("LoadedPolicy", "canonical_json", "load_policy_file", "load_policy_text"), ".loader"
        ),
        **dict.fromkeys(("policy_json_schema",), ".schema"),
    },
)
