"""`SharedBudget`: bytes that many connections of one server may hold together, and who
gives way when they would pass it.

A per-connection cap (`max_message_size`, `max_queue_bytes`) bounds one connection, not
their sum: eight connections each holding an unfinished 60 MiB message hold 480 MiB. A
server therefore shares two budgets among its connections (docs/limits.md, "WebSocket
messages and memory"): one for messages still arriving, one for messages queued or being
written to peers that read slowly.

When a connection's growth would take the sum past the total, the *offender* gives way,
not whoever happened to cross the line: the peer address holding the most, and of its
connections the one holding the most. So an attacker who fills most of the budget from one
address is the one disconnected when a legitimate worker's large message arrives, and many
small connections from one address count as the one large holder they add up to.

The budget only counts and chooses; the member that is chosen frees its share itself
(`BudgetMember.give_way`), since only it knows what its bytes are and how to wake the task
that reads it. Single-threaded like the event loop it serves: no lock.
"""

from __future__ import annotations

import logging
from typing import Protocol

__all__ = ["BudgetMember", "SharedBudget"]

logger = logging.getLogger("anyiii.transport")


class BudgetMember(Protocol):
    """A connection that counts its bytes against a `SharedBudget`."""

    @property
    def peer_host(self) -> str | None:
        """The peer's address without its port (None: unknown, counted on its own)."""
        ...

    def share_of(self, budget: SharedBudget) -> int:
        """The bytes this member holds now of what `budget` counts."""
        ...

    def give_way(self, budget: SharedBudget) -> None:
        """Drop what `budget` counts for this member, subtracting it from `budget.used`,
        and end the connection (the peer is told why if that is still possible)."""
        ...


class SharedBudget:
    """`total` bytes that the members together may hold; `used` is what they hold now.

    Members add to and subtract from `used` themselves as their buffers change (an int
    addition on the hot path), and call `relieve` when they grew past `total`.
    """

    __slots__ = ("_members", "total", "used", "what")

    def __init__(self, total: int, *, what: str) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
            raise ValueError(f"the budget for {what} must be a positive int, not {total!r}")
        self.total = total
        self.used = 0
        self.what = what
        """What the budget counts, for the close reason (e.g. "unfinished messages")."""
        self._members: set[BudgetMember] = set()

    @property
    def reason(self) -> str:
        """The close reason of a connection that gave way to this budget."""
        return f"{self.what} over the server's budget of {self.total} bytes"

    def join(self, member: BudgetMember) -> None:
        """Count `member` among those that may be asked to give way."""
        self._members.add(member)

    def leave(self, member: BudgetMember) -> None:
        """Forget `member` (its share must already be subtracted)."""
        self._members.discard(member)

    def relieve(self, grower: BudgetMember) -> bool:
        """Bring `used` back within `total` by asking offenders to give way, largest first.

        Returns False if `grower` itself was asked (it no longer holds anything counted
        here and its connection is ending), True if others gave way or nothing had to.
        """
        while self.used > self.total:
            offender = self.offender()
            if offender is None:  # shares and `used` disagree: nobody left to ask
                return True
            logger.warning(
                "%s: disconnecting a connection from %s holding %d bytes",
                self.reason,
                offender.peer_host or "an unknown address",
                offender.share_of(self),
            )
            offender.give_way(self)
            self.leave(offender)
            if offender is grower:
                return False
        return True

    def offender(self) -> BudgetMember | None:
        """The member holding the most of the peer address holding the most (None if no
        member holds anything). Walks the members: only called when over the total."""
        per_peer: dict[object, int] = {}
        largest: dict[object, tuple[int, BudgetMember]] = {}
        for member in self._members:
            share = member.share_of(self)
            if share <= 0:
                continue
            peer: object = member.peer_host or member
            per_peer[peer] = per_peer.get(peer, 0) + share
            held = largest.get(peer)
            if held is None or share > held[0]:
                largest[peer] = (share, member)
        if not per_peer:
            return None
        worst = max(per_peer, key=per_peer.__getitem__)
        return largest[worst][1]
