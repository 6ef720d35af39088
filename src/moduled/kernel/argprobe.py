"""Function probes with declared arguments: uprobes and kprobes.

Arguments are declared in order, either as bare type names (named
``arg0``, ``arg1``, ...) or as ``(name, type)`` pairs::

    Uprobe("c", "write", args=(("fd", "int"), ("buf", "char*"), ("n", "size_t")))
    Uprobe("c", "getpid", ret=True)            # adds retval
    Kprobe("do_sys_openat2", args=("int", "user char*"))

``char*`` reads a NUL-terminated string from the pointer (user memory for
uprobes, kernel memory for kprobes; ``user char*`` forces user memory).  A
return probe with arguments also attaches at entry, keeps the argument
registers in a hash map keyed by thread, and emits one record at return
with the arguments and ``retval``.  At most six arguments (the registers of
the x86-64 and arm64 calling conventions).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any

from ..errors import InvalidArgument, NotFound, SourceUnavailable
from . import doctor, hooks
from . import filter as flt
from .codegen import ProbeCode, Value, filter_fields, probe_function
from .probe_base import BUILTIN_NAMES, DEFAULT_RING_PAGES, ProbeSource
from .record import Layout, LayoutField, parse_type

__all__ = ["Kprobe", "Uprobe", "parse_args"]

MAX_ARGS = 6

#: Kernel functions people probe, and the tracepoint that says the same.
KPROBE_ALTERNATIVES = {
    "do_sys_openat2": "syscalls:sys_enter_openat",
    "do_sys_open": "syscalls:sys_enter_openat",
    "tcp_v4_connect": "sock:inet_sock_set_state",
    "tcp_v6_connect": "sock:inet_sock_set_state",
    "tcp_connect": "tcp:tcp_connect",
    "do_exit": "sched:sched_process_exit",
    "wake_up_new_task": "sched:sched_process_fork",
    "do_execveat_common": "sched:sched_process_exec",
    "oom_kill_process": "oom:mark_victim",
    "__send_signal_locked": "signal:signal_generate",
    "vfs_read": "syscalls:sys_enter_read",
    "vfs_write": "syscalls:sys_enter_write",
}


def parse_args(subject: str, args: Any) -> list[tuple[LayoutField, bool]]:
    """Check declared arguments; return (field, user_string) pairs."""
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise InvalidArgument(
            f"{subject}: args must be a sequence of types or (name, type) pairs"
        )
    if len(args) > MAX_ARGS:
        raise InvalidArgument(f"{subject}: at most {MAX_ARGS} arguments")
    out = []
    for i, item in enumerate(args):
        if isinstance(item, str):
            name, type_name = f"arg{i}", item
        elif isinstance(item, tuple) and len(item) == 2:
            name, type_name = item
        else:
            raise InvalidArgument(
                f"{subject}: argument {i} {item!r}: expected 'type' or (name, type)"
            )
        if name in BUILTIN_NAMES:
            raise InvalidArgument(
                f"{subject}: argument name {name!r} is a built-in field; rename it"
            )
        user = isinstance(type_name, str) and type_name.strip().startswith("user ")
        if user:
            type_name = type_name.strip()[5:]
        f = parse_type(name, type_name, allow_string=True)
        if f.kind != "int" and not f.string_arg:
            raise InvalidArgument(
                f"{subject}: argument {name} {type_name!r}: arguments are scalars, "
                "pointers or char*"
            )
        out.append((f, user))
    names = [f.name for f, _ in out]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{subject}: argument names repeat: {names}")
    return out


class _ArgProbe(ProbeSource):
    """Shared code of uprobes and kprobes."""

    _kind = ""
    _user_memory = True

    def __init__(
        self,
        subject: str,
        args: Any,
        ret: bool,
        filter: str | None,
        ring_pages: int,
    ) -> None:
        super().__init__(ring_pages=ring_pages)
        if not isinstance(ret, bool):
            raise InvalidArgument(f"{subject}: ret must be True or False")
        if filter is not None and not isinstance(filter, str):
            raise InvalidArgument(f"{subject}: filter must be a string expression")
        self.args = parse_args(subject, args)
        self.ret = ret
        self.filter = filter
        self._tree: flt.Node | None = None
        values = self._values()
        if filter is not None:
            self._tree = flt.parse(filter, filter_fields(values))
        self._layout = Layout(v.field for v in values)

    def _values(self, source: str = "ctx") -> list[Value]:
        """Values of the arguments (read from regs, or from saved ``md_arg``)."""
        values = []
        for i, (f, user) in enumerate(self.args):
            reg = f"PT_REGS_PARM{i + 1}(ctx)" if source == "ctx" else f"md_arg[{i}]"
            if f.string_arg:
                space = "user" if user or self._user_memory else "kernel"
                store = (
                    f"r->f_{f.name}[0] = 0; bpf_probe_read_{space}_str(r->f_{f.name}, "
                    f"sizeof(r->f_{f.name}), (const void *){reg});"
                )
                values.append(Value(f, store))
                continue
            load = f"({f.ctype}){reg}"
            ff = flt.FilterField("int", f.size, f.signed)
            values.append(Value(f, f"r->f_{f.name} = {load};", load, ff))
        if self.ret:
            f = parse_type("retval", "s64")
            load = "(s64)PT_REGS_RC(ctx)"
            ff = flt.FilterField("int", 8, True)
            values.append(Value(f, f"r->f_retval = {load};", load, ff))
        return values

    def _c_code(self, slot: int) -> str:
        assert self._layout is not None
        saved = self.ret and bool(self.args)
        values = self._values("saved" if saved else "ctx")
        code = ProbeCode(
            slot, self._layout, values, self._ring_pages, "struct pt_regs *ctx"
        )
        code.filter_tree = self._tree
        if saved:
            regs = " ".join(
                f"a.a[{i}] = PT_REGS_PARM{i + 1}(ctx);" for i in range(len(self.args))
            )
            code.preamble = (
                f"struct md_args_{slot} {{ u64 a[{MAX_ARGS}]; }};\n"
                f"BPF_HASH(md_saved_{slot}, u64, struct md_args_{slot}, 10240);\n"
                f"int md_entry_{slot}(struct pt_regs *ctx) {{\n"
                "    u64 id = bpf_get_current_pid_tgid();\n"
                f"    struct md_args_{slot} a = {{}};\n"
                f"    {regs}\n"
                f"    md_saved_{slot}.update(&id, &a);\n"
                "    return 0;\n}\n"
            )
            code.extra_checks = [
                f"struct md_args_{slot} *md_a = md_saved_{slot}.lookup(&md_pt);",
                "if (!md_a) return 0;",
                f"u64 md_arg[{MAX_ARGS}];",
                "__builtin_memcpy(md_arg, md_a->a, sizeof(md_arg));",
                f"md_saved_{slot}.delete(&md_pt);",
            ]
        return probe_function(code)


class Uprobe(_ArgProbe):
    """A probe on a function of a user-space binary or library.

    Args:
        binary: a path, or a library name (``"c"``) found like the linker
            does (bcc's ``BPF.find_library`` / ldconfig).
        symbol: the function's name, or its address (an int) in the file.
        args: declared argument types (see the module docstring).
        ret: probe the return instead of the entry; adds ``retval``.
        pid: only this process (default: every process using the binary).
        filter: a filter expression on the built-in fields, numeric
            arguments and ``retval``.
        ring_pages: the ring buffer's size in pages (a power of two).
    """

    _kind = "uprobe"
    _user_memory = True

    def __init__(
        self,
        binary: str,
        symbol: str | int,
        args: Sequence[Any] = (),
        ret: bool = False,
        pid: int | None = None,
        *,
        filter: str | None = None,
        ring_pages: int = DEFAULT_RING_PAGES,
    ) -> None:
        if not isinstance(binary, str) or not binary:
            raise InvalidArgument(f"uprobe {binary!r}: binary must be a path or name")
        if isinstance(symbol, bool) or not isinstance(symbol, (str, int)):
            raise InvalidArgument(
                f"uprobe {binary}: symbol {symbol!r} must be a name or an address"
            )
        if isinstance(symbol, str) and not symbol.replace(".", "_").isidentifier():
            raise InvalidArgument(f"uprobe {binary}: symbol {symbol!r} is not a name")
        if isinstance(symbol, int) and symbol < 0:
            raise InvalidArgument(
                f"uprobe {binary}: address {symbol} must be an offset >= 0"
            )
        if pid is not None and (
            not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0
        ):
            raise InvalidArgument(
                f"uprobe {binary}: pid {pid!r} must be a positive process id"
            )
        self.binary = binary
        self.symbol = symbol
        self.pid = pid
        self.path = binary
        super().__init__(f"uprobe {binary}:{symbol}", args, ret, filter, ring_pages)

    @property
    def key(self) -> Hashable:
        kind = "uretprobe" if self.ret else "uprobe"
        pid = f"[pid {self.pid}]" if self.pid else ""
        return f"{kind}:{self.binary}:{self.symbol}{pid}"

    @property
    def name(self) -> str:
        kind = "uretprobe" if self.ret else "uprobe"
        return f"{kind}:{self.path}:{self.symbol}"

    def _prepare(self) -> None:
        doctor.require(self.name, ("uprobes",))
        from bcc import BPF

        path = self.binary
        if "/" not in path:
            found = BPF.find_library(path.encode())
            if not found:
                raise NotFound(
                    f"uprobe {path}:{self.symbol}: no library {path!r} in the "
                    "linker cache; give its path (see `ldconfig -p`)"
                )
            path = found.decode() if isinstance(found, bytes) else found
        elif not os.path.exists(path):
            raise NotFound(f"uprobe {path}:{self.symbol}: no such file")
        if self.pid is not None and not os.path.isdir(f"/proc/{self.pid}"):
            raise NotFound(
                f"uprobe {path}:{self.symbol}: no process {self.pid}; give the pid "
                "of a running process, or none to probe every process"
            )
        sym = self.symbol if isinstance(self.symbol, str) else ""
        addr = self.symbol if isinstance(self.symbol, int) else 0
        try:
            BPF._check_path_symbol(path.encode(), sym.encode(), addr, self.pid or -1)
        # bcc raises bare Exception; any failure here is reported.
        except Exception:
            raise NotFound(
                f"uprobe {path}:{self.symbol}: no such symbol; list them with "
                f"`nm -D {path}`"
            ) from None
        self.path = path

    def _attach_functions(self, bpf: Any) -> None:
        slot = self._slot
        where = (self.path, self.symbol)
        if self.ret and self.args:
            entry = f"md_entry_{slot}"
            self._keep(hooks.attach_uprobe(bpf, *where, entry, pid=self.pid))
        probe = f"md_probe_{slot}"
        self._keep(hooks.attach_uprobe(bpf, *where, probe, ret=self.ret, pid=self.pid))


class Kprobe(_ArgProbe):
    """A probe on a kernel function (needs CONFIG_KPROBES).

    Args:
        function: the kernel function (see ``available_filter_functions``).
        args: declared argument types (see the module docstring).
        ret: probe the return instead of the entry; adds ``retval``.
        filter: a filter expression (as for :class:`Uprobe`).
        ring_pages: the ring buffer's size in pages (a power of two).

    Raises:
        SourceUnavailable (at register): kprobes are compiled out; the
            message names the tracepoint to use instead.
    """

    _kind = "kprobe"
    _user_memory = False

    def __init__(
        self,
        function: str,
        args: Sequence[Any] = (),
        ret: bool = False,
        *,
        filter: str | None = None,
        ring_pages: int = DEFAULT_RING_PAGES,
    ) -> None:
        if (
            not isinstance(function, str)
            or not function.replace(".", "_").isidentifier()
        ):
            raise InvalidArgument(
                f"kprobe {function!r}: expected a kernel function name"
            )
        self.function = function
        super().__init__(f"kprobe {function}", args, ret, filter, ring_pages)

    @property
    def key(self) -> Hashable:
        return f"{'kretprobe' if self.ret else 'kprobe'}:{self.function}"

    @property
    def name(self) -> str:
        return str(self.key)

    def _prepare(self) -> None:
        if not doctor.check_kprobes().ok:
            alt = KPROBE_ALTERNATIVES.get(self.function)
            hint = (
                f"use Tracepoint({alt.split(':')[0]!r}, {alt.split(':')[1]!r})"
                if alt
                else "use a Tracepoint (see /sys/kernel/tracing/available_events)"
            )
            raise SourceUnavailable(
                f"kprobe {self.function}: kprobes are compiled out of this kernel "
                f"(CONFIG_KPROBES); {hint}"
            )

    def _attach_functions(self, bpf: Any) -> None:
        slot = self._slot
        if self.ret and self.args:
            self._keep(hooks.attach_kprobe(bpf, self.function, f"md_entry_{slot}"))
        self._keep(
            hooks.attach_kprobe(bpf, self.function, f"md_probe_{slot}", ret=self.ret)
        )
