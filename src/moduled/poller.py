"""The poller under a context: epoll, internal timers and wake-ups.

Sources hand their fds to the context's epoll instance and get their
callbacks run on the loop thread (``_add_reader``); internal deadlines
(batch timeouts, thresholds, restart back-offs) sit in a heap
(``_call_at``) that sets the poll's timeout; work deferred to the end of a
round (``_call_soon``) and calls from other threads (``_call_threadsafe``)
wake the poll through an eventfd.  Level-triggered epoll: a callback that
does not consume its fd is called again on the next round.

A callback that raises fails the module owning the source it belongs to
(when it can be told) and never the loop.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import os
import select
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Poller", "TimerHandle"]

log = logging.getLogger("moduled.core")

_monotonic_ns = time.monotonic_ns
_EPOLLIN = select.EPOLLIN


class TimerHandle:
    """A pending internal timer; ``cancel()`` it to drop it."""

    __slots__ = ("callback", "cancelled", "deadline", "seq")

    def __init__(self, deadline: int, seq: int, callback: Callable[[], Any]) -> None:
        self.deadline = deadline
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class Poller:
    """The base of :class:`moduled.Context`: what its loop waits on."""

    name: str
    _busy: bool
    _closed: bool
    _idle_ns: int
    _hook_errors: tuple[type[BaseException], ...]

    def _init_poller(self) -> None:
        self._ep = select.epoll()
        self._readers: dict[int, Callable[[], Any]] = {}
        self._timers: list[TimerHandle] = []
        self._timer_seq = 0
        self._soon: list[Callable[[], Any]] = []
        self._threadsafe: collections.deque[Callable[[], Any]] = collections.deque()
        self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._woken = False
        self._add_reader(self._wakefd, self._on_wake)

    def _poll_once(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (-1: forever), then run the
        callbacks of readable fds and of due timers."""
        if timeout:
            t0 = _monotonic_ns()
            fds = self._ep.poll(timeout)
            self._idle_ns += _monotonic_ns() - t0
        else:
            fds = self._ep.poll(0)
        if fds:
            readers = self._readers
            for fd, _mask in fds:
                callback = readers.get(fd)
                if callback is not None:
                    self._run_callback(callback)

        timers = self._timers
        if timers and timers[0].deadline <= _monotonic_ns():
            now = _monotonic_ns()
            while timers and timers[0].deadline <= now:
                handle = heapq.heappop(timers)
                if not handle.cancelled:
                    self._run_callback(handle.callback)

    def _add_reader(self, fd: int, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (level-triggered)."""
        if fd in self._readers:
            self._ep.modify(fd, _EPOLLIN)
        else:
            self._ep.register(fd, _EPOLLIN)
        self._readers[fd] = callback

    def _remove_reader(self, fd: int) -> None:
        """Stop watching ``fd``; harmless if it is not watched."""
        if self._readers.pop(fd, None) is not None:
            # An fd closed before this call is already gone from the set.
            with contextlib.suppress(OSError, ValueError):
                self._ep.unregister(fd)

    def _call_at(self, deadline_ns: int, callback: Callable[[], Any]) -> TimerHandle:
        """Call ``callback()`` once at a ``time.monotonic_ns()`` deadline."""
        self._timer_seq += 1
        handle = TimerHandle(deadline_ns, self._timer_seq, callback)
        heapq.heappush(self._timers, handle)
        if not self._busy:
            self._wake()
        return handle

    def _call_soon(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` after the current round, before the next poll."""
        self._soon.append(callback)
        if not self._busy:
            self._wake()

    def _call_threadsafe(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` on the loop thread; callable from any thread."""
        self._threadsafe.append(callback)
        self._wake()

    def _wake(self) -> None:
        if not self._woken and not self._closed:
            self._woken = True
            os.eventfd_write(self._wakefd, 1)

    def _on_wake(self) -> None:
        self._woken = False
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wakefd)
        queue = self._threadsafe
        while queue:
            self._run_callback(queue.popleft())

    def _run_callback(self, callback: Callable[[], Any]) -> None:
        try:
            callback()
        except self._hook_errors as exc:
            from .module import Module

            owner = getattr(callback, "__self__", None)
            module = getattr(owner, "_module", None) or (
                owner if isinstance(owner, Module) else None
            )
            if isinstance(module, Module) and module._ctx is self:
                module._fail(exc, f"{type(owner).__name__} callback")
            else:
                log.exception("%s: internal callback %r failed", self.name, callback)

    def _close_poller(self) -> None:
        self._remove_reader(self._wakefd)
        os.close(self._wakefd)
        self._ep.close()
