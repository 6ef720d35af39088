"""The restart backoff schedule."""

from __future__ import annotations

from moduled.daemon.restart import Backoff


def test_delay_doubles_up_to_the_cap():
    backoff = Backoff(1.0, 5.0)

    delays = [backoff.next_delay() for _ in range(5)]

    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_module_that_stayed_up_longer_than_the_cap_starts_over():
    backoff = Backoff(1.0, 5.0)
    for _ in range(3):
        backoff.next_delay()

    backoff.last_start_ns -= 6 * 10**9  # it ran for 6 s since its last start

    assert backoff.next_delay() == 1.0
