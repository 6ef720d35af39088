"""Network link watcher: interfaces appearing, vanishing, going up or down.

Source: rtnetlink's link group (``md.Rtnl(groups=("link",))``).  The
kernel sends a link message for many reasons (statistics, MTU, carrier);
this plugin reports only what an operator asks about: a new interface, a
removed one, and changes of its administrative (IFF_UP) or operational
(IFF_RUNNING / IFLA_OPERSTATE) state.

Publishes on ``net/link``::

    {"event": "up" | "down" | "added" | "removed", "index": 3,
     "name": "br0", "admin_up": true, "running": false,
     "operstate": "down"}

Settings (``[plugins.net_links]``): ``ignore``: interface names not to
report (default ``[]``).
"""

from __future__ import annotations

import moduled as md

IFF_UP = 0x1
IFF_RUNNING = 0x40
#: RFC 2863 operational states, as the kernel numbers them (IF_OPER_*).
OPERSTATES = (
    "unknown",
    "notpresent",
    "down",
    "lowerlayerdown",
    "testing",
    "dormant",
    "up",
)


def link_state(attrs: dict) -> tuple[bool, bool, str]:
    """(admin up, running, operstate name) from a link message's attrs."""
    flags = int(attrs.get("flags") or 0)
    oper = attrs.get("IFLA_OPERSTATE")
    if isinstance(oper, int) and 0 <= oper < len(OPERSTATES):
        name = OPERSTATES[oper]
    else:
        name = "unknown"
    return bool(flags & IFF_UP), bool(flags & IFF_RUNNING), name


class NetLinks(md.Module):
    """Report link changes that matter."""

    name = "net_links"

    def on_start(self) -> None:
        self._ignore = frozenset(self.config.get("ignore", ()))
        self._known: dict[int, tuple[bool, bool, str]] = {}
        self.register(md.Rtnl(groups=("link",)))

    def on_evt(self, events: list[md.Event]) -> None:
        for ev in events:
            if ev.type is not md.SrcType.RTNL or ev.data.group != "link":
                continue
            re = ev.data
            if re.name in self._ignore or re.index is None:
                continue
            if re.action == "del":
                self._known.pop(re.index, None)
                self._report("removed", re, (False, False, "notpresent"))
                continue
            state = link_state(re.attrs)
            before = self._known.get(re.index)
            self._known[re.index] = state
            if before == state:
                continue
            if before is None:
                event = "added"
            elif state[0] and state[1]:
                event = "up"
            else:
                event = "down"
            self._report(event, re, state)

    def _report(self, event: str, re: md.RtnlEvent, state: tuple) -> None:
        admin, running, oper = state
        self.log.info("link: %s %s (index %s, %s)", re.name, event, re.index, oper)
        self.publish(
            "net/link",
            {
                "event": event,
                "index": re.index,
                "name": re.name,
                "admin_up": admin,
                "running": running,
                "operstate": oper,
            },
        )
