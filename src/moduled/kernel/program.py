"""One BPF program per module per dispatch round.

A bcc compile costs about half a second of CPU and a hundred MiB of peak
memory, so probes are not compiled one by one: every probe a module
registers in one dispatch round joins that module's *pending* program, and
``ctx._call_soon`` builds it after the round: one compile, then each probe
attaches and starts reading its ring buffer.  Until then a probe is
``pending`` (its records are not lost: nothing is attached yet).

Everything that can be checked without compiling (privileges, tracefs,
bcc, the tracepoint and its fields, the filter, the binary and symbol of a
uprobe) is checked in ``register()``; a probe that fails at attach time
anyway is marked ``failed``, logged at ERROR, and the others go on.

A program lives until its last probe detaches; then bcc's ``cleanup()``
closes it and removes the uprobe events it created from tracefs.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from .codegen import prelude
from .ringbuf import LostCounter

if TYPE_CHECKING:
    from .probe_base import ProbeSource as _Probe

__all__ = ["Program", "enlist"]

log = logging.getLogger(__name__)

#: Compiler flags: the stand-in headers trip clang warnings that say nothing
#: about the probe.
CFLAGS = ["-w"]

_pending: weakref.WeakKeyDictionary[Any, Program] = weakref.WeakKeyDictionary()


def enlist(probe: _Probe) -> Program:
    """Add ``probe`` to its module's program of this round."""
    module = probe._module
    program = _pending.get(module)
    if program is None:
        program = Program(module)
        _pending[module] = program
        probe._ctx._call_soon(program.build)  # type: ignore[union-attr]
    program.pending.append(probe)
    return program


class Program:
    """The probes of one module compiled together."""

    def __init__(self, module: Any) -> None:
        self.module_name = getattr(module, "name", "?")
        self._module_ref = weakref.ref(module)
        self.pending: list[_Probe] = []
        self.live: list[_Probe] = []
        self.bpf: Any = None
        self.lost: LostCounter | None = None
        self.text = ""
        self.compile_s = 0.0

    def build(self) -> None:
        """Compile the pending probes and attach them (loop thread)."""
        import time

        module = self._module_ref()
        if module is not None and _pending.get(module) is self:
            del _pending[module]
        probes, self.pending = self.pending, []
        if not probes:
            return
        from bcc import BPF

        parts = [prelude(len(probes))]
        for slot, probe in enumerate(probes):
            parts.append(probe._c_code(slot))
        self.text = "\n".join(parts)
        t0 = time.perf_counter()
        try:
            self.bpf = BPF(text=self.text.encode(), cflags=CFLAGS)
        # bcc raises bare Exception; any failure here is reported.
        except Exception as exc:
            log.error(
                "module %s: BPF program failed to compile: %s", self.module_name, exc
            )
            for probe in probes:
                probe._fail(f"compile failed: {exc}")
            return
        self.compile_s = time.perf_counter() - t0
        self.lost = LostCounter(self.bpf[b"md_lost"].map_fd, len(probes))
        for slot, probe in enumerate(probes):
            try:
                probe._start(self, slot)
            # bcc raises bare Exception; any failure here is reported.
            except Exception as exc:
                log.error("%r: attach failed: %s", probe, exc)
                probe._fail(f"attach failed: {exc}")
                continue
            self.live.append(probe)
        log.info(
            "module %s: compiled %d probes in %.2f s",
            self.module_name,
            len(probes),
            self.compile_s,
        )
        if not self.live:
            self.close()

    def release(self, probe: _Probe) -> None:
        """Forget a detached probe; close the program after the last one."""
        if probe in self.pending:
            self.pending.remove(probe)
        if probe in self.live:
            self.live.remove(probe)
            if not self.live:
                self.close()

    def close(self) -> None:
        if self.lost is not None:
            self.lost.close()
            self.lost = None
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
