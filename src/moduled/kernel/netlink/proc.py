"""Process events from the kernel's process connector.

The proc connector (``CONFIG_PROC_EVENTS``) multicasts one ``proc_event``
per fork, exec, id change, setsid, ptrace attach, comm change, core dump and
exit of every task on the system, on the ``NETLINK_CONNECTOR`` family, group
``CN_IDX_PROC``.  Kernel facts this source relies on:

* Nothing is sent until some socket asks: the listener sends a
  ``PROC_CN_MCAST_LISTEN`` control message and the kernel answers with an
  acknowledgement event (``what == 0``) multicast to every listener - but
  only when the request was accepted, or someone else already listens.  We
  look for our own acknowledgement (matched by its ack number) right after
  asking; without it the kernel ignored us and registration fails with
  ``SourceUnavailable``.
* Older kernels (before the 6.6 rework) need ``CAP_NET_ADMIN`` to listen;
  newer ones let anyone listen (seen on 6.18).  The acknowledgement check
  catches a refusal either way.  The kernel serves only callers in the
  initial user and pid namespaces (events carry pids of the initial pid
  namespace), and the connector exists only in the initial network
  namespace: elsewhere ``send`` fails with ``ECONNREFUSED``.
* Since 6.6 the listen request may carry an event mask (``struct
  proc_input``) that the kernel applies per socket, so unwanted kinds are
  never queued.  Older kernels ignore a request of that size, so we first
  send the classic 4-byte request (listen to everything), then the masked
  one; on old kernels the second is a no-op and Python drops what we did
  not ask for.  Leaving sends ``PROC_CN_MCAST_IGNORE`` so that kernels
  before 6.6, which count listeners by request, stop producing events.
* A fork storm produces events much faster than Python reads them; the
  socket's receive buffer then overruns (``ENOBUFS``, see ``_socket``).
* ``exit_code`` in the exit event is the wait status (``exit 3`` gives
  0x300; death by SIGKILL gives 9); we report it the way :mod:`subprocess`
  does: the exit code, or minus the signal number.
* Threads are tasks too: a thread's fork and exit events have ``pid`` (the
  thread id) different from ``tgid`` (the process id).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any, ClassVar, NamedTuple

from ...errors import InvalidArgument, SourceUnavailable
from ...flags import SrcType
from ._socket import DEFAULT_RCVBUF, NetlinkSource, check_names

__all__ = ["KINDS", "ProcEvent", "ProcEvents", "decode_proc_event"]

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3

#: Kind name -> the kernel's ``enum proc_cn_event`` bit.
KINDS: dict[str, int] = {
    "fork": 0x00000001,
    "exec": 0x00000002,
    "uid": 0x00000004,
    "gid": 0x00000040,
    "sid": 0x00000080,
    "ptrace": 0x00000100,
    "comm": 0x00000200,
    "coredump": 0x40000000,
    "exit": 0x80000000,
}
_KIND_OF = {bit: name for name, bit in KINDS.items()}

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_HEAD = _NLMSGHDR.size + _CN_MSG.size  # proc_event starts here
_DATA = _HEAD + _EVENT_HEAD.size  # the event_data union starts here
_U32 = struct.Struct("=I")
_PAIR = struct.Struct("=ii")
_QUAD = struct.Struct("=iiii")
_ID = struct.Struct("=iiII")
_EXIT = struct.Struct("=iiIIii")
_COMM = struct.Struct("=ii16s")
_CAP_NET_ADMIN = 12


class ProcEvent(NamedTuple):
    """One process connector event.

    ``pid`` is the task (thread) id and ``tgid`` the process id; fields a
    kind does not carry are None.  ``fork``: the child's ids, and the
    parent's in ``parent_*``.  ``exit``: ``exit_code`` is the exit status,
    or minus the signal number that killed the task; ``exit_signal`` the
    signal sent to the parent; ``parent_*`` the parent.  ``uid``/``gid``:
    real and effective ids.  ``sid``: the new session id.  ``ptrace``:
    ``tracer_pid``/``tracer_tgid`` (0 on detach).  ``coredump``: the parent.
    ``comm`` is the task's name: carried by ``comm`` events, read from
    ``/proc`` for the others (None once the task is gone).  ``ts_ns`` is
    the kernel's CLOCK_MONOTONIC time of the event, ``cpu`` where it ran.
    """

    kind: str
    pid: int
    tgid: int
    parent_pid: int | None = None
    parent_tgid: int | None = None
    exit_code: int | None = None
    comm: str | None = None
    uid: int | None = None
    euid: int | None = None
    gid: int | None = None
    egid: int | None = None
    sid: int | None = None
    tracer_pid: int | None = None
    tracer_tgid: int | None = None
    exit_signal: int | None = None
    cpu: int | None = None
    ts_ns: int | None = None


def wait_status_code(status: int) -> int:
    """Turn a wait status into an exit code, or minus the killing signal."""
    if status & 0x7F:
        return -(status & 0x7F)
    return (status >> 8) & 0xFF


def read_comm(pid: int) -> str | None:
    """Return ``/proc/<pid>/comm`` without its newline, or None if gone."""
    try:
        fd = os.open(f"/proc/{pid}/comm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 64)
    except OSError:
        return None
    finally:
        os.close(fd)
    return raw.rstrip(b"\n").decode("utf-8", "replace")


def decode_proc_event(
    data: bytes | bytearray | memoryview, mask: int = 0xFFFFFFFF, comm: bool = True
) -> ProcEvent | None:
    """Decode one connector datagram; None if it is no wanted proc event.

    Args:
        data: the datagram, starting at its ``nlmsghdr``.
        mask: the kinds to keep, as ``enum proc_cn_event`` bits.
        comm: read ``/proc/<pid>/comm`` for kinds that do not carry it.
    """
    if len(data) < _DATA:
        return None
    what = _U32.unpack_from(data, _HEAD)[0]
    if not what & mask:
        return None  # the acknowledgement (what 0) or an unwanted kind
    idx, val = _PAIR.unpack_from(data, _NLMSGHDR.size)
    if idx != CN_IDX_PROC or val != CN_VAL_PROC:
        return None
    kind = _KIND_OF.get(what)
    if kind is None:
        return None
    _, cpu, ts = _EVENT_HEAD.unpack_from(data, _HEAD)
    o = _DATA

    if kind == "fork":
        ppid, ptgid, pid, tgid = _QUAD.unpack_from(data, o)
        ev = ProcEvent(kind, pid, tgid, ppid, ptgid)
    elif kind == "exit":
        pid, tgid, code, sig, ppid, ptgid = _EXIT.unpack_from(data, o)
        ev = ProcEvent(
            kind, pid, tgid, ppid, ptgid, wait_status_code(code), exit_signal=sig
        )
    elif kind == "comm":
        pid, tgid, raw = _COMM.unpack_from(data, o)
        name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return ProcEvent(kind, pid, tgid, comm=name, cpu=cpu, ts_ns=ts)
    elif kind == "uid":
        pid, tgid, r, e = _ID.unpack_from(data, o)
        ev = ProcEvent(kind, pid, tgid, uid=r, euid=e)
    elif kind == "gid":
        pid, tgid, r, e = _ID.unpack_from(data, o)
        ev = ProcEvent(kind, pid, tgid, gid=r, egid=e)
    elif kind == "ptrace":
        pid, tgid, tpid, ttgid = _QUAD.unpack_from(data, o)
        ev = ProcEvent(kind, pid, tgid, tracer_pid=tpid, tracer_tgid=ttgid)
    elif kind == "coredump":
        pid, tgid, ppid, ptgid = _QUAD.unpack_from(data, o)
        ev = ProcEvent(kind, pid, tgid, ppid, ptgid)
    elif kind == "sid":
        pid, tgid = _PAIR.unpack_from(data, o)
        ev = ProcEvent(kind, pid, tgid, sid=tgid)
    else:  # exec
        pid, tgid = _PAIR.unpack_from(data, o)
        ev = ProcEvent(kind, pid, tgid)

    return ev._replace(comm=read_comm(ev.pid) if comm else None, cpu=cpu, ts_ns=ts)


def _control(op: int, seq: int, ack: int, mask: int | None = None) -> bytes:
    """Build a connector control message (listen/ignore, optional mask)."""
    payload = _U32.pack(op) if mask is None else struct.pack("=II", op, mask)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, ack, len(payload), 0)
    length = _NLMSGHDR.size + len(cn) + len(payload)
    return _NLMSGHDR.pack(length, NLMSG_DONE, 0, 0, 0) + cn + payload


def _has_cap_net_admin() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return os.geteuid() == 0


def _kernel_version() -> tuple[int, int]:
    try:
        major, minor = os.uname().release.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


class ProcEvents(NetlinkSource):
    """Process events (fork, exec, exit, ...) from the proc connector.

    Args:
        kinds: the kinds wanted, any of :data:`KINDS` (all when None).
        rcvbuf: the socket receive buffer in bytes; a larger one survives
            longer bursts without overruns.
        comm: fill ``comm`` from ``/proc/<pid>/comm`` for kinds that do not
            carry it (one small read per event; turn off under fork storms).

    Raises:
        InvalidArgument: an unknown kind or a bad rcvbuf.
        SourceUnavailable: at registration, when the kernel refuses to
            multicast process events to us (see the module docstring).
    """

    type: ClassVar[SrcType] = SrcType.PROC

    def __init__(
        self,
        kinds: Iterable[str] | None = ("fork", "exec", "exit"),
        *,
        rcvbuf: int = DEFAULT_RCVBUF,
        comm: bool = True,
    ) -> None:
        if kinds is None:
            kinds = KINDS
        self._kinds = check_names("ProcEvents", "kinds", kinds, KINDS)
        if not isinstance(comm, bool):
            raise InvalidArgument(f"ProcEvents: comm {comm!r} must be True or False")
        super().__init__(rcvbuf)
        self._mask = 0
        for k in self._kinds:
            self._mask |= KINDS[k]
        self._comm = comm
        self._seq = 0

    @property
    def key(self) -> str:
        return "proc"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds this source reports, sorted."""
        return self._kinds

    def _open(self) -> socket.socket:
        what = "proc connector"
        if _kernel_version() < (6, 6) and not _has_cap_net_admin():
            raise SourceUnavailable(
                f"{what}: listening needs CAP_NET_ADMIN on kernels before 6.6; "
                "run as root or grant the capability"
            )
        sock = self._new_socket(NETLINK_CONNECTOR, what)
        self._bind_groups(sock, CN_IDX_PROC, what)
        try:
            self._listen(sock, what)
        except BaseException:
            sock.close()
            raise
        return sock

    def _listen(self, sock: socket.socket, what: str) -> None:
        """Ask for events and wait for the kernel's acknowledgement."""
        seq = int.from_bytes(os.urandom(4), "little") & 0x3FFFFFFF
        ack = int.from_bytes(os.urandom(4), "little") & 0x3FFFFFFF
        self._seq = seq
        try:
            sock.send(_control(PROC_CN_MCAST_LISTEN, seq, ack))
            sock.send(_control(PROC_CN_MCAST_LISTEN, seq + 1, ack + 2, self._mask))
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                raise SourceUnavailable(
                    f"{what}: no connector in this network namespace (it exists "
                    "in the initial one only); run in the host network namespace"
                ) from exc
            raise SourceUnavailable(
                f"{what}: the listen request failed ({exc.strerror})"
            ) from exc

        # The acknowledgement is multicast synchronously from send(); the
        # deadline only covers kernels that defer it to a work queue.
        deadline = time.monotonic() + 0.25
        buf = bytearray(4096)
        while True:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return  # events are flowing; our answer drowned in them
                raise SourceUnavailable(
                    f"{what}: reading the acknowledgement failed ({exc.strerror})"
                ) from exc
            err = _ack_error(buf[:n], ack + 1)
            if err is None:
                continue
            if err == 0:
                return
            if err == errno.EPERM:
                raise SourceUnavailable(
                    f"{what}: listening needs CAP_NET_ADMIN on this kernel; "
                    "run as root or grant the capability"
                )
            raise SourceUnavailable(
                f"{what}: the kernel refused to listen ({os.strerror(err)})"
            )
        raise SourceUnavailable(
            f"{what}: the kernel ignored the listen request; it serves only the "
            "initial user and pid namespaces, and before Linux 6.6 needs "
            "CAP_NET_ADMIN"
        )

    def _before_close(self, sock: socket.socket) -> None:
        # If this fails, closing the socket is enough on Linux 6.6 and later.
        with contextlib.suppress(OSError):
            sock.send(_control(PROC_CN_MCAST_IGNORE, self._seq + 2, 0))

    def _decode(self, data: memoryview, out: list[Any]) -> None:
        ev = decode_proc_event(data, self._mask, self._comm)
        if ev is not None:
            out.append(ev)

    def _dump(self) -> dict[str, Any]:
        d = super()._dump()
        d["kinds"] = list(self._kinds)
        return d


def _ack_error(data: bytes | bytearray, ack: int) -> int | None:
    """The error in the acknowledgement answering ``ack``, else None.

    The kernel echoes our ``ack`` plus one; it replaces the sequence number
    with its own per-cpu counter (Linux 6.6 and later), so ``ack`` is the
    only thing that identifies the answer.
    """
    if len(data) < _DATA + 4:
        return None
    cack = _CN_MSG.unpack_from(data, _NLMSGHDR.size)[3]
    what = _U32.unpack_from(data, _HEAD)[0]
    if what != 0 or cack != ack:
        return None
    return int(_U32.unpack_from(data, _DATA)[0])
