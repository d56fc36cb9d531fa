"""The policy language: schema, loader, condition compiler, operators."""

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
