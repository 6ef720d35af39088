"""Netlink decoders on datagrams captured from a 6.18 kernel, and argument
checks of the netlink sources (no kernel access needed)."""

from __future__ import annotations

import pytest

import moduled as md
from moduled.kernel.netlink import ProcEvent, ProcEvents, Rtnl, Uevent
from moduled.kernel.netlink.proc import decode_proc_event, wait_status_code
from moduled.kernel.netlink.rtnl import RtnlDecoder
from moduled.kernel.netlink.uevent import decode_uevent

# `sh -c 'echo -n mdcomm > /proc/$$/comm; exit 3'` (pid 4272) started by
# pid 4270, then `sh -c 'kill -9 $$'` (pid 4273): one proc_event each.
FORK = bytes.fromhex(
    "4c00000003000000a80f0000000000000100000001000000a80f000000000000"
    "280000000100000001000000a7cb63d79d000000ae100000ae100000b0100000"
    "b01000000000000000000000"
)
EXEC = bytes.fromhex(
    "4c00000003000000281000000000000001000000010000002810000000000000"
    "2800000002000000000000005ff567d79d000000b0100000b010000000000000"
    "000000000000000000000000"
)
COMM = bytes.fromhex(
    "4c00000003000000291000000000000001000000010000002910000000000000"
    "28000000000200000000000077d78ad79d000000b0100000b01000006d64636f"
    "6d6d00000000000000000000"
)
EXIT3 = bytes.fromhex(
    "4c000000030000002a1000000000000001000000010000002a10000000000000"
    "2800000000000080000000003b9b8cd79d000000b0100000b010000000030000"
    "11000000ae100000ae100000"
)
KILLED = bytes.fromhex(
    "4c000000030000002c1000000000000001000000010000002c10000000000000"
    "28000000000000800000000065f49cd79d000000b1100000b110000009000000"
    "11000000ae100000ae100000"
)
# `ip link add mdcap0 type bridge`: the kernel's uevent for the link.
UEVENT_ADD = (
    b"add@/devices/virtual/net/mdcap0\0ACTION=add\0"
    b"DEVPATH=/devices/virtual/net/mdcap0\0SUBSYSTEM=net\0DEVTYPE=bridge\0"
    b"INTERFACE=mdcap0\0IFINDEX=7\0SEQNUM=837\0"
)
# `ip addr add 10.79.0.1/24 dev mdcap0`: RTM_NEWADDR for ifindex 7.
NEWADDR = bytes.fromhex(
    "5000000014000000129b116bb41000000218800007000000080001000a4f0001"
    "080002000a4f00010b0003006d64636170300000080008008000000014000600"
    "ffffffffffffffffb7080100b7080100"
)


def test_fork_event_names_child_and_parent():
    ev = decode_proc_event(FORK, comm=False)

    assert ev is not None
    assert ev[:7] == ("fork", 4272, 4272, 4270, 4270, None, None)
    assert ev.ts_ns == 0x9DD763CBA7


def test_exec_event_carries_the_process_ids_only():
    ev = decode_proc_event(EXEC, comm=False)

    assert ev == ProcEvent("exec", 4272, 4272, cpu=0, ts_ns=ev.ts_ns)


def test_comm_event_carries_the_new_name():
    ev = decode_proc_event(COMM, comm=False)

    assert ev is not None
    assert (ev.kind, ev.pid, ev.comm) == ("comm", 4272, "mdcomm")


def test_exit_event_reports_the_exit_code_not_the_wait_status():
    ev = decode_proc_event(EXIT3, comm=False)

    assert ev is not None
    assert ev[:6] == ("exit", 4272, 4272, 4270, 4270, 3)
    assert ev.exit_signal == 17  # SIGCHLD to the parent


def test_exit_by_signal_reports_minus_the_signal_number():
    ev = decode_proc_event(KILLED, comm=False)

    assert ev is not None
    assert ev.exit_code == -9


@pytest.mark.parametrize(
    ("status", "code"), [(0, 0), (0x300, 3), (0xFF00, 255), (9, -9), (0x86, -6)]
)
def test_wait_status_becomes_an_exit_code_like_subprocess(status, code):
    assert wait_status_code(status) == code


def test_unwanted_kinds_and_acknowledgements_decode_to_nothing():
    exit_only = 0x80000000
    ack = bytearray(EXEC)
    ack[36:40] = b"\0\0\0\0"

    assert decode_proc_event(FORK, exit_only, comm=False) is None
    assert decode_proc_event(bytes(ack), comm=False) is None
    assert decode_proc_event(EXIT3, exit_only, comm=False) is not None


@pytest.mark.parametrize("cut", [0, 10, 36, 51])
def test_truncated_proc_datagram_decodes_to_nothing(cut):
    assert decode_proc_event(EXIT3[:cut], comm=False) is None


def test_uevent_env_holds_every_pair():
    ev = decode_uevent(UEVENT_ADD)

    assert ev is not None
    assert ev.action == "add"
    assert ev.subsystem == "net"
    assert ev.devpath == "/devices/virtual/net/mdcap0"
    assert ev.env["INTERFACE"] == "mdcap0"
    assert ev.env["IFINDEX"] == "7"
    assert len(ev.env) == 7


def test_libudev_and_headless_messages_are_not_uevents():
    assert decode_uevent(b"libudev\0\xfe\xed\xca\xfe" + UEVENT_ADD) is None
    assert decode_uevent(b"no header here\0ACTION=add\0") is None
    assert decode_uevent(b"") is None


def test_rtnl_address_event_has_index_and_decoded_attributes():
    decoder = RtnlDecoder(("addr",), use_cache=True)
    decoder.names[7] = "mdcap0"
    out: list = []

    decoder.decode(memoryview(NEWADDR), out)

    assert len(out) == 1
    ev = out[0]
    assert (ev.group, ev.action, ev.index, ev.name) == ("addr", "new", 7, "mdcap0")
    assert ev.attrs["IFA_ADDRESS"] == "10.79.0.1"
    assert ev.attrs["prefixlen"] == 24
    assert ev.attrs["IFA_LABEL"] == "mdcap0"


def test_rtnl_decoder_skips_groups_it_was_not_asked_for():
    decoder = RtnlDecoder(("link",), use_cache=False)
    out: list = []

    decoder.decode(memoryview(NEWADDR), out)

    assert out == []


@pytest.mark.parametrize("cut", [3, 16, 20, 40, 79])
def test_truncated_rtnl_datagram_never_raises(cut):
    decoder = RtnlDecoder(("addr",), use_cache=False)
    out: list = []

    decoder.decode(memoryview(NEWADDR[:cut]), out)

    assert all(ev.group == "addr" for ev in out)


@pytest.mark.parametrize(
    "kinds", [("exec", "bogus"), "exec", (), [1], 7, ("EXEC",)], ids=repr
)
def test_bad_kinds_are_refused_naming_the_valid_ones(kinds):
    with pytest.raises(md.InvalidArgument, match="valid kinds: fork, exec"):
        ProcEvents(kinds)


@pytest.mark.parametrize("rcvbuf", [0, -1, True, "4M", 1.5, 1 << 31], ids=repr)
def test_bad_rcvbuf_is_refused(rcvbuf):
    with pytest.raises(md.InvalidArgument, match="rcvbuf"):
        ProcEvents(rcvbuf=rcvbuf)
    with pytest.raises(md.InvalidArgument, match="rcvbuf"):
        Uevent(rcvbuf=rcvbuf)
    with pytest.raises(md.InvalidArgument, match="rcvbuf"):
        Rtnl(rcvbuf=rcvbuf)


def test_bad_comm_switch_is_refused():
    with pytest.raises(md.InvalidArgument, match="comm"):
        ProcEvents(comm="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "groups", [("link", "nope"), "link", (), [None], 3, ("LINK",)], ids=repr
)
def test_bad_groups_are_refused_naming_the_valid_ones(groups):
    with pytest.raises(md.InvalidArgument, match="valid groups: link, neigh"):
        Rtnl(groups)


@pytest.mark.parametrize("subsystem", ["", 5, b"net", "a/b", "x=y", "n\0"], ids=repr)
def test_bad_subsystem_is_refused(subsystem):
    with pytest.raises(md.InvalidArgument, match="subsystem"):
        Uevent(subsystem)


def test_keys_identify_what_a_source_listens_to():
    assert ProcEvents(("exit", "fork")).key == "proc"
    assert ProcEvents(("exit", "fork", "exit")).kinds == ("exit", "fork")
    assert Uevent("net").key == "net"
    assert Uevent().key is None
    assert Rtnl(("route", "link", "route")).key == ("link", "route")
    assert ProcEvents(None).kinds == tuple(sorted(ProcEvents(None).kinds))
    assert len(ProcEvents(None).kinds) == 9
