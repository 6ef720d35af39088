"""Reading a BPF ring buffer map directly through mmap, in batches.

bcc's own ring buffer reader calls back into Python once per record through
ctypes.  This reader maps the ring itself, the way libbpf does, and decodes
every record that is ready in one pass:

* page 0 (read-write) holds the consumer position, which we advance;
* page 1 (read-only) holds the producer position, followed by the data
  pages mapped twice in a row, so a record that wraps around the end of the
  ring is still contiguous in memory.

Each record starts with an 8-byte header: a u32 length whose bit 31 says the
producer is still writing it (stop there; it will be ready on the next
wakeup) and bit 30 that it was discarded (skip it), then a u32 page offset.
Records are padded to 8 bytes.  The map fd is pollable: it is readable while
the consumer position lags the producer's, which is what the loop's
level-triggered reader needs.

A probe's records all have one length, so a run of committed records is a
regular array: its length words are checked at once through a strided
memoryview, and the run is unpacked by one ``struct.iter_unpack`` (see
:class:`moduled.kernel.record.Decoder`), with no Python code per record.

Records the program could not reserve (ring full) are counted by the BPF
side in a per-probe slot of a ``BPF_F_MMAPABLE`` array; :class:`LostCounter`
reads it through mmap as well, so accounting costs no syscall.

Positions and counters are 8-byte words shared with producers running on
other CPUs at that very moment, so each is read and written in one aligned
8-byte access, through a ``memoryview`` cast to ``"Q"`` (a single
``memcpy`` of 8 bytes).  Never through ``struct.pack_into``: CPython's
packer first zeroes the destination, then stores the value, and a producer
that loads the consumer position in between sees 0.  The kernel then finds
the producer more than a ring's size ahead of the consumer and fails the
reservation of a nearly empty ring.  That was the loss bench/kernel.py
measured at 100,000 events/s (1 to 211 records in 300,000, whatever the
ring size, more often with more producers; a reservation retried right
away still fell in the same window); with single stores it is gone.

TODO(2026-12): the position loads rely on x86's ordering; arm64 needs an
acquire load of the header before the record, which Python cannot express.
"""

from __future__ import annotations

import mmap
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .record import Decoder, ProbeEvent

__all__ = ["LostCounter", "RingReader"]

_PAGE = mmap.PAGESIZE
_HDR = struct.Struct("=I")
_BUSY = 1 << 31
_DISCARD = 1 << 30
_LEN_MASK = _DISCARD - 1


class RingReader:
    """Consume the records of one ring buffer map.

    Args:
        map_fd: the ``BPF_MAP_TYPE_RINGBUF`` map's fd (owned by bcc).
        pages: the ring's size in pages (a power of two).
    """

    def __init__(self, map_fd: int, pages: int) -> None:
        self.size = pages * _PAGE
        self._mask = self.size - 1
        self._cons = mmap.mmap(
            map_fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._prod = mmap.mmap(
            map_fd,
            _PAGE + 2 * self.size,
            mmap.MAP_SHARED,
            mmap.PROT_READ,
            offset=_PAGE,
        )
        # One aligned 8-byte load or store each (see the module docstring).
        self._cons_pos = memoryview(self._cons).cast("Q")
        self._prod_pos = memoryview(self._prod)[:_PAGE].cast("Q")
        self._data = memoryview(self._prod)[_PAGE:]
        self._words = self._data.cast("I")
        self._wanted = b""
        self._wanted_length = -1
        #: At most this many records are decoded in one bulk run.
        self._cap = 1 << 16
        #: Records shorter than the layout (a custom program's mistake).
        self.short = 0

    def consume(self, decoder: Decoder) -> list[ProbeEvent]:
        """Decode every ready record, advance the consumer, return them.

        Runs of committed records of the decoder's length are decoded in
        bulk (see :meth:`_run`); anything else (a record still being
        written, a discarded one, one of another length) one at a time.
        """
        data = self._data
        cons = self._cons_pos[0]
        prod = self._prod_pos[0]
        mask = self._mask
        length, stride = decoder.length, decoder.stride
        out: list[ProbeEvent] = []
        while cons < prod:
            off = cons & mask
            n = self._run(off, min((prod - cons) // stride, self._cap), length, stride)
            if n:
                out += decoder.many(data[off : off + n * stride])
                cons += n * stride
                continue
            header = self._words[off >> 2]
            if header & _BUSY:
                break
            size = header & _LEN_MASK
            if not header & _DISCARD:
                if size >= length:
                    out.append(decoder.one(data, off + 8))
                else:
                    self.short += 1
            cons += (8 + size + 7) & ~7
        self._cons_pos[0] = cons
        return out

    def _run(self, off: int, n: int, length: int, stride: int) -> int:
        """How many records from ``off`` on are committed and ``length`` long.

        The length words of ``n`` records, taken with a strided view, are
        compared with the expected ones in C; when they differ (a record
        still being written, usually the last), a binary search of the same
        comparison finds the first that differs.
        """
        if n <= 0:
            return 0
        words = self._words[off >> 2 : (off + n * stride) >> 2 : stride >> 2]
        seen = words.tobytes()
        want = self._want(length, n)
        if seen == want:
            return n
        lo, hi = 0, n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if seen[: 4 * mid] == want[: 4 * mid]:
                lo = mid
            else:
                hi = mid
        return lo

    def _want(self, length: int, n: int) -> bytes:
        want = self._wanted
        if self._wanted_length != length or len(want) < 4 * n:
            want = _HDR.pack(length) * max(n, self.size // 64)
            self._wanted, self._wanted_length = want, length
        return want[: 4 * n] if len(want) > 4 * n else want

    def close(self) -> None:
        """Unmap the ring (the map itself belongs to the BPF object)."""
        self._words.release()
        self._data.release()
        self._prod_pos.release()
        self._cons_pos.release()
        self._prod.close()
        self._cons.close()


class LostCounter:
    """Per-probe counters of records the BPF side could not reserve."""

    def __init__(self, map_fd: int, slots: int) -> None:
        length = max(_PAGE, (slots * 8 + _PAGE - 1) // _PAGE * _PAGE)
        self._map = mmap.mmap(
            map_fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        # One aligned 8-byte load a counter (see the module docstring).
        self._counts = memoryview(self._map).cast("Q")
        self._seen = [0] * slots

    def delta(self, slot: int) -> int:
        """Records lost by ``slot`` since the last call."""
        total = self._counts[slot]
        new = total - self._seen[slot]
        self._seen[slot] = total
        return new

    def close(self) -> None:
        self._counts.release()
        self._map.close()
