"""The classic libmodule example: echo what is typed until 'q'.

Run it and type; each line is echoed back by a second module that it is
told to.  'q' (or end of input, Ctrl-D) quits.  stdin is read only when the
loop reports it readable, so the process sleeps while nobody types.
"""

from __future__ import annotations

import os
import sys

import moduled as md


class Reader(md.Module):
    """Reads stdin when it is readable and tells the echoer each line."""

    name = "reader"

    def on_start(self) -> None:
        self.register(md.Fd(sys.stdin))
        self._buf = b""

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is not md.SrcType.FD:
                continue
            chunk = os.read(ev.data.fd, 4096)
            if not chunk:
                self.log.info("stdin: end of input")
                if self._buf.strip():
                    self.tell("echo", self._buf.decode(errors="replace"))
                self.ctx.quit(0)
                return
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line.strip() == "q":
                    self.ctx.quit(0)
                    return
                self.tell("echo", line)


class Echo(md.Module):
    """Prints what it is told."""

    name = "echo"

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            print(f"echo: {ev.data.message}", flush=True)


def main() -> int:
    ctx = md.Context("echo")
    ctx.register(Echo())
    ctx.register(Reader())
    return ctx.loop()


if __name__ == "__main__":
    sys.exit(main())
