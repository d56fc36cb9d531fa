"""Loading a policy allocates hundreds of thousands of objects that all live on
(YAML nodes, validated models, compiled closures); each would-be-garbage
collection in between walks all of them again, which made loading grow faster
than the policy (5.9 s at 10,000 rules, most of it the cyclic collector).
No cycle made while loading is garbage worth collecting before it ends."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["gc_paused"]

P = ParamSpec("P")
R = TypeVar("R")


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with the cyclic collector paused (reference counting still frees
    everything it can); the collector is re-enabled by whoever paused it first."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper
