"""Calls from foreign threads (libmodule 6.x roadmap: thread-safe calls).

A context belongs to the thread that loops it.  While it loops, a module or
context call made from any other thread is not run there: it is queued to
the loop thread, which runs queued calls in the order they were made, and
the caller gets a :class:`concurrent.futures.Future` with the call's result
or exception instead of the result itself.  Before and after looping every
thread may call directly (setting a context up, inspecting it afterwards).

``Module.tell`` does the same check inline, since it is the hot path.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["forward", "loop_thread_only", "on_foreign_thread"]

F = TypeVar("F", bound=Callable[..., Any])

_get_ident = threading.get_ident


def on_foreign_thread(ctx: Any) -> bool:
    """Tell whether the caller is not the thread looping ``ctx``."""
    owner = ctx._owner
    return owner is not None and owner != _get_ident()


def forward(ctx: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """Queue ``fn(*args, **kwargs)`` to ``ctx``'s loop thread.

    Returns:
        A future that gets the call's result or exception.
    """
    future: Future[Any] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    ctx._call_threadsafe(run)
    return future


def loop_thread_only(method: F) -> F:
    """Run ``method`` on the loop thread when called from another thread.

    The decorated method belongs to a Module (whose context is ``_ctx``) or
    to a Context (itself).
    """

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        ctx = getattr(self, "_ctx", self)
        if ctx is not None and ctx._owner is not None and ctx._owner != _get_ident():
            return forward(ctx, method, self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]
