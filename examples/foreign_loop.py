"""Drive a context from asyncio: the context's fd in the asyncio loop.

A ticker module counts timer expirations while an asyncio coroutine tells
it messages; after five ticks the module quits and the asyncio side stops.
"""

from __future__ import annotations

import asyncio
import sys

import moduled as md


class Ticker(md.Module):
    name = "ticker"

    def on_start(self) -> None:
        self.ticks = 0
        self.notes: list[str] = []
        self.register(md.Timer(10_000_000))

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is md.SrcType.TIMER:
                self.ticks += ev.data.expirations
            elif ev.type is md.SrcType.PS:
                self.notes.append(ev.data.message)
        if self.ticks >= 5:
            self.ctx.quit(0)


async def run(ctx: md.Context) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        ctx.dispatch()
        if not ctx.looping and not done.done():
            loop.remove_reader(ctx.fileno())
            done.set_result(None)

    loop.add_reader(ctx.fileno(), readable)
    ticker = ctx.lookup("ticker")
    for i in range(3):
        await asyncio.sleep(0.005)
        if ticker is not None and ticker.is_(md.ModState.RUNNING):
            ticker.tell(ticker, f"note {i} from asyncio")
    await done
    return 0


def main() -> int:
    ctx = md.Context("foreign", persist=True)
    ticker = ctx.register(Ticker())
    code = asyncio.run(run(ctx))
    print(f"ticks: {ticker.ticks}, notes from asyncio: {len(ticker.notes)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
