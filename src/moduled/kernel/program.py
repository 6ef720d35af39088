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
anyway is marked ``failed``, logged at ERROR, and the others go on.  When
the combined program does not compile (custom C of a :class:`Bpf`), each
probe is compiled alone so that only the culprit fails, with clang's
diagnostics in its ``dump()["error"]``.

A program lives until its last probe detaches; then bcc's ``cleanup()``
closes it and removes the uprobe events it created from tracefs.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import weakref
from typing import TYPE_CHECKING, Any

from .codegen import prelude
from .hooks import claim_autoloaded
from .ringbuf import LostCounter

if TYPE_CHECKING:
    from .probe_base import ProbeSource as _Probe

__all__ = ["CompileError", "Program", "compile_text", "enlist"]

log = logging.getLogger(__name__)

#: Compiler flags: the stand-in headers trip clang warnings that say nothing
#: about the probe.
CFLAGS = ["-w"]

#: At most this much of clang's diagnostics goes into a probe's error.
MAX_DIAGNOSTICS = 4000

_pending: weakref.WeakKeyDictionary[Any, Program] = weakref.WeakKeyDictionary()


class CompileError(Exception):
    """bcc could not build the program; the message has clang's diagnostics."""


def compile_text(text: str) -> Any:
    """Build ``text`` with bcc; return the ``BPF`` object.

    clang writes its diagnostics to fd 2, where nobody reading the module's
    state would see them: they are captured into the error instead.

    Raises:
        CompileError: with clang's diagnostics (or bcc's message).
    """
    from bcc import BPF

    failure: Exception | None = None
    with tempfile.TemporaryFile() as diag:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(diag.fileno(), 2)
        try:
            bpf = BPF(text=text.encode(), cflags=CFLAGS)
        # bcc raises bare Exception; any failure here is reported.
        except Exception as exc:
            failure = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        diag.seek(0)
        said = diag.read().decode("utf-8", "replace").strip()
    if failure is None:
        if said:
            log.debug("bcc said: %s", said)
        return bpf
    if len(said) > MAX_DIAGNOSTICS:
        said = said[:MAX_DIAGNOSTICS] + " [...]"
    raise CompileError(said or str(failure))


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

    def __init__(self, module: Any, module_name: str | None = None) -> None:
        self.module_name = module_name or getattr(module, "name", "?")
        self._module_ref: Any = (
            weakref.ref(module) if module is not None else lambda: None
        )
        self.pending: list[_Probe] = []
        self.live: list[_Probe] = []
        self.bpf: Any = None
        self.lost: LostCounter | None = None
        self.text = ""
        self.compile_s = 0.0

    def build(self) -> None:
        """Compile the pending probes and attach them (loop thread)."""
        module = self._module_ref()
        if module is not None and _pending.get(module) is self:
            del _pending[module]
        probes, self.pending = self.pending, []
        if not probes:
            return
        parts = [prelude(len(probes))]
        for slot, probe in enumerate(probes):
            parts.append(probe._c_code(slot))
        self.text = "\n".join(parts)
        t0 = time.perf_counter()
        try:
            self.bpf = compile_text(self.text)
        except CompileError as exc:
            if len(probes) > 1:
                self._split(probes)
                return
            probe = probes[0]
            log.error(
                "module %s: probe %s failed to compile: %s",
                self.module_name,
                probe.name,
                exc,
            )
            probe._fail(f"compile failed: {exc}")
            return
        self.compile_s = time.perf_counter() - t0
        self.lost = LostCounter(self.bpf[b"md_lost"].map_fd, len(probes))
        for probe in probes:
            for a in claim_autoloaded(self.bpf, probe._own_text()):
                probe._keep(a)
        for slot, probe in enumerate(probes):
            try:
                probe._start(self, slot)
            # bcc raises bare Exception; any failure here is reported.
            except Exception as exc:
                log.error(
                    "module %s: probe %s failed to attach: %s",
                    self.module_name,
                    probe.name,
                    exc,
                )
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

    def _split(self, probes: list[_Probe]) -> None:
        """Compile each probe alone, so that only the culprit fails."""
        log.warning(
            "module %s: the program of %d probes failed to compile; compiling "
            "each alone to find the culprit",
            self.module_name,
            len(probes),
        )
        for probe in probes:
            alone = Program(self._module_ref(), self.module_name)
            alone.pending.append(probe)
            probe._program = alone
            alone.build()

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
