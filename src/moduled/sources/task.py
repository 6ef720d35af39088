"""Task: a function run on a worker thread, its outcome sent back as an event.

Every context has one thread pool for its tasks, created on the first task
(threads named after the context) and shut down when its last task source
detaches.  A running source holds its context, so a context is never
collected with a live pool; the loop detaches every source on exit.  The
result travels back through ``_call_threadsafe``, so the event is queued on
the loop thread.

A task cannot be interrupted: deregistering it (or stopping its module)
before it finishes discards its outcome, but the function runs to the end.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import InvalidArgument
from ..events import TaskEvent
from ..flags import SrcFlag, SrcType
from .base import Source

__all__ = ["Task"]

log = logging.getLogger(__name__)

_MAX_WORKERS = min(16, (os.cpu_count() or 1) + 4)


def _pool_for(ctx: Any) -> concurrent.futures.ThreadPoolExecutor:
    """Return the context's task pool, creating it on first use."""
    pool = getattr(ctx, "_task_pool", None)
    if pool is None:
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=_MAX_WORKERS, thread_name_prefix=str(ctx.name)[:12]
        )
        ctx._task_pool = pool
        ctx._task_users = 0
    return pool


def _release_pool(ctx: Any) -> None:
    users = getattr(ctx, "_task_users", 0) - 1
    ctx._task_users = max(users, 0)
    if users <= 0:
        pool = getattr(ctx, "_task_pool", None)
        ctx._task_pool = None
        if pool is not None:
            pool.shutdown(wait=False)


class Task(Source):
    """Run ``fn()`` on the context's thread pool.

    Args:
        fn: a callable taking no arguments.
        tid: an int naming the task (the key).

    The event is ``TaskEvent(tid, result, exception)``: ``result`` is what
    ``fn`` returned (None if it raised), ``exception`` what it raised (None
    if it returned).  One-shot: the source deregisters itself after it.
    """

    type: ClassVar[SrcType] = SrcType.TASK
    forced_flags: ClassVar[SrcFlag] = SrcFlag.ONESHOT

    def __init__(self, fn: Callable[[], Any], tid: int) -> None:
        if not callable(fn):
            raise InvalidArgument(f"Task: fn {fn!r} must be callable (no arguments)")
        try:
            inspect.signature(fn).bind()
        except TypeError:
            raise InvalidArgument(
                f"Task: fn {fn!r} must be callable without arguments; wrap it, "
                "e.g. functools.partial(fn, arg) or lambda: fn(arg)"
            ) from None
        except ValueError:
            pass  # no signature to check (some builtins): trust the caller
        if isinstance(tid, bool) or not isinstance(tid, int):
            raise InvalidArgument(f"Task: tid {tid!r} must be an int")
        self._fn = fn
        self._tid = tid
        self._future: concurrent.futures.Future[Any] | None = None
        self._state = "new"

    @property
    def key(self) -> int:
        return self._tid

    @property
    def tid(self) -> int:
        return self._tid

    def _attach(self) -> None:
        ctx: Any = self._ctx  # carries the pool as ad-hoc attributes
        assert ctx is not None
        pool = _pool_for(ctx)
        ctx._task_users += 1
        try:
            future = pool.submit(self._fn)
        except BaseException:
            _release_pool(ctx)
            raise
        self._future = future
        self._state = "running"
        # The callback runs on the worker thread (or here, if already done);
        # it must not read self._ctx, which the loop thread may clear.
        future.add_done_callback(lambda f: self._on_done_thread(ctx, f))

    def _on_done_thread(self, ctx: Any, future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            return
        try:
            ctx._call_threadsafe(lambda: self._on_done(future))
        except Exception:  # the loop is gone; nobody to tell
            log.debug("task %d: finished after its context stopped", self._tid)

    def _on_done(self, future: concurrent.futures.Future[Any]) -> None:
        if self._future is not future or self._module is None:
            return  # detached meanwhile: the outcome is discarded
        exc = future.exception()
        self._state = "failed" if exc is not None else "done"
        result = None if exc is not None else future.result()
        self._emit(TaskEvent(self._tid, result, exc))

    def _detach(self) -> None:
        future, self._future = self._future, None
        if future is None:
            return
        if not future.done():
            future.cancel()
            if self._state == "running":
                self._state = "abandoned"
        if self._ctx is not None:
            _release_pool(self._ctx)

    def _dump(self) -> dict[str, Any]:
        fn = getattr(self._fn, "__qualname__", None) or repr(self._fn)
        return {"tid": self._tid, "fn": fn, "state": self._state}
