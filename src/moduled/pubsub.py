"""Topic subscriptions and their lookup.

A pattern without regular-expression metacharacters is a plain topic and is
found with one dict lookup; other patterns are compiled and matched with
``re.fullmatch``.  Patterns are indexed by their literal prefix (``news/``
for ``news/.*``), so a topic is only matched against the patterns whose
prefix it starts with, plus those without a prefix.  The list of subscribers
of each topic published is cached until a subscription changes, so a
repeated publish costs one lookup however many subscriptions exist.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument
from .flags import SrcFlag, priority

if TYPE_CHECKING:
    from .module import Module

__all__ = [
    "CTX_STARTED",
    "CTX_STOPPED",
    "CTX_TICK",
    "MOD_STARTED",
    "MOD_STOPPED",
    "SYSTEM_PREFIX",
    "Subscription",
    "Topics",
]

#: Topics starting with this prefix are published by the context only.
SYSTEM_PREFIX = "MODULED_"
#: The context started looping (sender None).
CTX_STARTED = "MODULED_CTX_STARTED"
#: The context stopped looping (sender None).
CTX_STOPPED = "MODULED_CTX_STOPPED"
#: The context's tick (``set_tick``) elapsed (sender None).
CTX_TICK = "MODULED_CTX_TICK"
#: A module started (sender: the module).
MOD_STARTED = "MODULED_MOD_STARTED"
#: A module stopped (sender: the module; its ``failure`` says why).
MOD_STOPPED = "MODULED_MOD_STOPPED"

_METACHARS = frozenset(".^$*+?{}[]\\|()")
_CACHE_MAX = 4096


class Subscription:
    """One module's subscription to one pattern."""

    __slots__ = (
        "flags",
        "module",
        "pattern",
        "prefix",
        "prio",
        "regex",
        "seq",
        "userdata",
    )

    def __init__(
        self, module: Module, pattern: str, flags: SrcFlag, userdata: Any
    ) -> None:
        self.module = module
        self.pattern = pattern
        self.flags = flags
        self.userdata = userdata
        self.prio = priority(flags)
        self.regex: re.Pattern[str] | None = None  # None: a plain topic
        self.prefix = literal_prefix(pattern)
        self.seq = 0
        if not is_literal(pattern):
            try:
                self.regex = re.compile(pattern)
            except re.error as exc:
                raise InvalidArgument(
                    f"module {module.name!r}: subscribe({pattern!r}): "
                    f"bad regular expression ({exc}); escape it with re.escape "
                    "for a literal topic"
                ) from None

    def dump(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "regex": self.regex is not None,
            "flags": int(self.flags),
        }


def is_literal(pattern: str) -> bool:
    """Tell whether ``pattern`` matches only itself."""
    return not _METACHARS.intersection(pattern)


def literal_prefix(pattern: str) -> str:
    """Return what every topic matching ``pattern`` starts with ('' if
    unknown): the characters before its first metacharacter, less the last
    one when a quantifier follows it."""
    if "|" in pattern:
        return ""  # an alternation may bypass any prefix
    out: list[str] = []
    for c in pattern:
        if c in _METACHARS:
            if c in "*?{" and out:
                out.pop()
            break
        out.append(c)
    return "".join(out)


class Topics:
    """Every subscription of a context, indexed for publish."""

    def __init__(self) -> None:
        self._exact: dict[str, list[Subscription]] = {}
        self._regex: list[Subscription] = []
        self._seq = 0
        # Patterns by literal prefix: length -> prefix -> subscriptions.
        self._by_prefix: dict[int, dict[str, list[Subscription]]] = {}
        self._anywhere: list[Subscription] = []
        self._cache: dict[str, list[Subscription]] = {}

    def add(self, sub: Subscription) -> None:
        self.remove(sub.module, sub.pattern)
        self._seq += 1
        sub.seq = self._seq
        if sub.regex is None:
            self._exact.setdefault(sub.pattern, []).append(sub)
        else:
            self._regex.append(sub)
            self._index()
        self._cache.clear()

    def remove(self, module: Module, pattern: str) -> bool:
        """Drop ``module``'s subscription to ``pattern``; tell if it existed."""
        if is_literal(pattern):
            subs = self._exact.get(pattern)
            if not subs:
                return False
            kept = [s for s in subs if s.module is not module]
            if len(kept) == len(subs):
                return False
            if kept:
                self._exact[pattern] = kept
            else:
                del self._exact[pattern]
        else:
            kept = [
                s
                for s in self._regex
                if not (s.module is module and s.pattern == pattern)
            ]
            if len(kept) == len(self._regex):
                return False
            self._regex = kept
            self._index()
        self._cache.clear()
        return True

    def _index(self) -> None:
        by_prefix: dict[int, dict[str, list[Subscription]]] = {}
        anywhere = []
        for sub in self._regex:
            if sub.prefix:
                table = by_prefix.setdefault(len(sub.prefix), {})
                table.setdefault(sub.prefix, []).append(sub)
            else:
                anywhere.append(sub)
        self._by_prefix = by_prefix
        self._anywhere = anywhere

    def remove_module(self, module: Module, patterns: list[str]) -> None:
        for pattern in patterns:
            self.remove(module, pattern)

    def match(self, topic: str) -> list[Subscription]:
        """Return the subscriptions matching ``topic``: plain ones, then
        patterns in subscription order."""
        subs = self._cache.get(topic)
        if subs is not None:
            return subs
        subs = list(self._exact.get(topic, ()))
        candidates = list(self._anywhere)
        for length, table in self._by_prefix.items():
            found = table.get(topic[:length])
            if found:
                candidates.extend(found)
        if candidates:
            candidates.sort(key=_by_seq)
            subs.extend(s for s in candidates if s.regex and s.regex.fullmatch(topic))
        cache = self._cache
        if len(cache) >= _CACHE_MAX:
            # Forget the oldest quarter rather than everything.
            for old in list(itertools.islice(cache, _CACHE_MAX // 4)):
                del cache[old]
        cache[topic] = subs
        return subs


def _by_seq(sub: Subscription) -> int:
    return sub.seq
