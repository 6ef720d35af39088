"""Reading a BPF ring buffer map directly through mmap, in batches.

bcc's own ring buffer reader calls back into Python once per record through
ctypes.  This reader maps the ring itself, the way libbpf does, and decodes
every record that is ready in one pass with a precompiled ``struct.Struct``:

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

Records the program could not reserve (ring full) are counted by the BPF
side in a per-probe slot of a ``BPF_F_MMAPABLE`` array; :class:`LostCounter`
reads it through mmap as well, so accounting costs no syscall.

TODO(2026-12): the position loads rely on x86's ordering; arm64 needs an
acquire load of the header before the record, which Python cannot express.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["LostCounter", "RingReader"]

_PAGE = mmap.PAGESIZE
_U64 = struct.Struct("=Q")
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
        self._data = memoryview(self._prod)[_PAGE:]

    def consume(self, decode: Callable[[Any, int], Any]) -> list[Any]:
        """Decode every ready record, advance the consumer, return them."""
        data = self._data
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod, 0)[0]
        out: list[Any] = []
        append = out.append
        hdr = _HDR.unpack_from
        mask = self._mask
        while cons < prod:
            off = cons & mask
            length = hdr(data, off)[0]
            if length & _BUSY:
                break
            if not length & _DISCARD:
                append(decode(data, off + 8))
            cons += (8 + (length & _LEN_MASK) + 7) & ~7
        _U64.pack_into(self._cons, 0, cons)
        return out

    def close(self) -> None:
        """Unmap the ring (the map itself belongs to the BPF object)."""
        self._data.release()
        self._prod.close()
        self._cons.close()


class LostCounter:
    """Per-probe counters of records the BPF side could not reserve."""

    def __init__(self, map_fd: int, slots: int) -> None:
        length = max(_PAGE, (slots * 8 + _PAGE - 1) // _PAGE * _PAGE)
        self._map = mmap.mmap(
            map_fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._seen = [0] * slots

    def delta(self, slot: int) -> int:
        """Records lost by ``slot`` since the last call."""
        total = _U64.unpack_from(self._map, slot * 8)[0]
        new = total - self._seen[slot]
        self._seen[slot] = total
        return new

    def close(self) -> None:
        self._map.close()
