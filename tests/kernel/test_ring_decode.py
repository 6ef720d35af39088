"""Ring buffer reading and record decoding, on a ring laid out in a file.

The reader maps the kernel's layout (consumer page, producer page, data
twice); a file holding the same bytes exercises the bulk path, the stop at
a record still being written, discarded and short records, without BPF.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import struct

import pytest

from moduled.kernel.record import Layout, ProbeEvent, ProbeFields, parse_type
from moduled.kernel.ringbuf import RingReader

PAGE = mmap.PAGESIZE
BUSY = 1 << 31
DISCARD = 1 << 30


def layout() -> Layout:
    return Layout(
        [
            parse_type("n", "u32"),
            parse_type("name", "char[8]"),
            parse_type("arr", "u16[3]"),
            parse_type("big", "u64"),
        ],
        header=False,
    )


def ring_file(tmp_path, records, pages=1):
    """Write a ring holding ``records`` ((header_len, body), ...)."""
    size = pages * PAGE
    data = bytearray(size)
    pos = 0
    for length, body in records:
        entry = struct.pack("=II", length, 0) + body
        for i, byte in enumerate(entry):
            data[(pos + i) % size] = byte
        pos += (8 + (length & ~(BUSY | DISCARD)) + 7) & ~7
    path = tmp_path / "ring"
    cons = bytearray(PAGE)
    prod = bytearray(PAGE)
    struct.pack_into("=Q", prod, 0, pos)
    path.write_bytes(bytes(cons) + bytes(prod) + bytes(data) * 2)
    return path


def reader_for(path, pages=1):
    f = open(path, "r+b")  # noqa: SIM115 - closed by the test
    return f, RingReader(f.fileno(), pages)


def body(lay: Layout, n: int) -> bytes:
    return lay.struct.pack(n, b"rec%d" % n, 1, 2, n, n)


def test_a_run_of_records_is_decoded_in_bulk_up_to_one_being_written(tmp_path):
    lay = layout()
    recs = [(lay.size, body(lay, i)) for i in range(5)]
    recs.append((lay.size | BUSY, body(lay, 5)))
    recs.append((lay.size, body(lay, 6)))
    f, reader = reader_for(ring_file(tmp_path, recs))

    events = reader.consume(lay.decoder("test:probe"))

    assert [e.fields["n"] for e in events] == [0, 1, 2, 3, 4]
    assert events[3].fields["name"] == "rec3"
    assert events[3].fields["arr"] == [1, 2, 3]
    assert events[0].probe == "test:probe"
    cons = struct.unpack_from("=Q", reader._cons, 0)[0]
    assert cons == 5 * ((8 + lay.size + 7) & ~7)
    reader.close()
    f.close()


def test_discarded_records_are_skipped_and_short_ones_counted(tmp_path):
    lay = layout()
    recs = [
        (lay.size, body(lay, 1)),
        (lay.size | DISCARD, body(lay, 2)),
        (8, b"\0" * 8),
        (lay.size, body(lay, 3)),
    ]
    f, reader = reader_for(ring_file(tmp_path, recs))

    events = reader.consume(lay.decoder("p"))

    assert [e.fields["n"] for e in events] == [1, 3]
    assert reader.short == 1
    reader.close()
    f.close()


def test_records_wrapping_around_the_ring_end_are_read_whole(tmp_path):
    lay = layout()
    stride = (8 + lay.size + 7) & ~7
    skip = PAGE // stride - 2
    assert PAGE % stride  # one record straddles the end
    recs = [(lay.size, body(lay, i)) for i in range(skip + 5)]
    path = ring_file(tmp_path, recs)
    f, reader = reader_for(path)
    struct.pack_into("=Q", reader._cons, 0, skip * stride)

    events = reader.consume(lay.decoder("p"))

    assert [e.fields["n"] for e in events] == list(range(skip, skip + 5))
    reader.close()
    f.close()


def test_probe_fields_behave_as_a_read_only_mapping():
    lay = layout()
    fields = lay.decoder("p").one(body(lay, 7), 0).fields

    assert isinstance(fields, ProbeFields)
    assert list(fields) == ["n", "name", "arr", "big"]
    assert fields["n"] == 7 and fields.get("name") == "rec7"
    assert fields.get("nope", 5) == 5 and "arr" in fields and "nope" not in fields
    assert fields == {"n": 7, "name": "rec7", "arr": [1, 2, 7], "big": 7}
    assert dict(fields.items()) == fields._asdict()
    with pytest.raises(KeyError):
        fields["nope"]
    with pytest.raises(TypeError):
        fields["n"] = 1  # type: ignore[index]


def test_probe_events_pickle_and_serialise_with_plain_dicts():
    lay = layout()
    ev = lay.decoder("p").one(body(lay, 2), 0)

    copy = pickle.loads(pickle.dumps(ev))
    text = json.dumps(ev.fields._asdict())

    assert copy == ProbeEvent("p", {"n": 2, "name": "rec2", "arr": [1, 2, 2], "big": 2})
    assert json.loads(text) == {"n": 2, "name": "rec2", "arr": [1, 2, 2], "big": 2}


def test_a_producer_never_sees_a_half_written_consumer_position(tmp_path):
    # A producer on another CPU loads the consumer position while we store
    # it; a store in two steps (struct.pack_into zeroes the word first) made
    # the kernel see 0 and fail reservations of a nearly empty ring.
    lay = layout()
    f, reader = reader_for(ring_file(tmp_path, [(lay.size, body(lay, 1))]))
    position = 0x0123_4567_89AB_CDE8  # past the producer: nothing to read
    reader._cons_pos[0] = position
    ctrl = memoryview(mmap.mmap(-1, PAGE)).cast("Q")  # ready, stop, seen, reads
    watched = memoryview(mmap.mmap(f.fileno(), PAGE)).cast("Q")
    cpus = sorted(os.sched_getaffinity(0))
    pid = os.fork()
    if pid == 0:  # the watcher: stands for the kernel's producer
        try:
            if len(cpus) > 1:
                os.sched_setaffinity(0, {cpus[-1]})
            seen = reads = 0
            ctrl[0] = 1
            while not ctrl[1]:
                for _ in range(100):
                    seen += watched[0] != position
                reads += 100
            ctrl[2], ctrl[3] = seen, reads
        finally:
            os._exit(0)
    try:
        while not ctrl[0]:
            os.sched_yield()
        decoder = lay.decoder("p")
        for _ in range(20_000):
            reader.consume(decoder)
    finally:
        ctrl[1] = 1
        os.waitpid(pid, 0)

    assert ctrl[3] > 0
    assert ctrl[2] == 0, f"{ctrl[2]} of {ctrl[3]} loads saw another position"
    watched.release()
    reader.close()
    f.close()
