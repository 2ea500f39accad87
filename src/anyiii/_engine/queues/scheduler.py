"""Which queued messages to deliver now, and what a delivery's outcome does (sans-IO).

Messages live in lanes (a named queue, or one subscribed function of a topic), in the order
they were accepted. `due()` hands out every message that may go now: its lane is open (a
topic lane needs a live subscription), fewer than `concurrency` of the lane's messages are
in flight, its retry delay has passed, its target function is registered, and, in a FIFO
lane, no earlier message of its group is waiting or in flight. A delivery then ends in
`succeeded` (the message is gone), `failed` (one attempt more: retried after an
exponential backoff, or dead-lettered once `max_attempts` are used up) or `hold` (its
target was not there: no attempt is counted and it waits for the function).

The clock is injected and nothing here does I/O; the service turns the decisions into
calls and commits.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .config import DeliveryPolicy
from .model import LaneKey, Message

__all__ = ["Lane", "Scheduler"]


@dataclass(slots=True, eq=False)
class Lane:
    """The messages of one queue, or of one subscribed function of a topic."""

    key: LaneKey
    pending: list[tuple[int, str]] = field(default_factory=list)
    """(seq, id) of the messages waiting, in order."""
    in_flight: dict[str, Message] = field(default_factory=dict)
    busy_groups: set[str] = field(default_factory=set)
    """FIFO groups with a message in flight."""


class Scheduler:
    """Every live and dead message and the delivery rules (see the module docstring).

    `policy_for(lane)` gives a lane's policy; `lane_open(lane)` says whether it may
    deliver at all (topic lanes: someone is subscribed); `target_ready(namespace,
    function_id)` whether the target is registered.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        policy_for: Callable[[LaneKey], DeliveryPolicy],
        lane_open: Callable[[LaneKey], bool],
        target_ready: Callable[[str, str], bool],
    ) -> None:
        self._clock = clock
        self._policy_for = policy_for
        self._lane_open = lane_open
        self._target_ready = target_ready
        self.live: dict[str, Message] = {}
        """Messages waiting or in flight, by id."""
        self.dead: dict[str, Message] = {}
        """Dead letters, by id."""
        self.lanes: dict[LaneKey, Lane] = {}
        self._deadlines: dict[LaneKey, float] = {}
        """When each lane that waits on a timer (a retry, a poll) next has work."""
        self._woken: float | None = None

    # --- accepting -----------------------------------------------------------------------------

    def add(self, message: Message) -> None:
        """Accept a message (new, restored or redriven): it waits in its lane."""
        if message.dead:
            self.dead[message.id] = message
            return
        self.live[message.id] = message
        lane = self.lanes.get(message.lane)
        if lane is None:
            lane = self.lanes[message.lane] = Lane(message.lane)
        bisect.insort(lane.pending, (message.seq, message.id))

    def offer(self, message: Message) -> list[Message]:
        """Accept a new message; returns what goes out now (marked in flight): the message
        itself, or in a FIFO lane whatever of the lane may go.

        Only its own lane can change, so this decides without scanning the others (a
        standard lane need not even scan itself: a new message is the last in order). A
        message that must wait for its target shortens the deadline to the next poll.
        """
        self.add(message)
        lane = self.lanes[message.lane]
        if not self._lane_open(lane.key):
            return []
        policy = self._policy_for(lane.key)
        if policy.fifo:
            return self.due(lane.key)
        if len(lane.in_flight) >= policy.concurrency:
            return []
        if not self._target_ready(message.namespace, message.function_id):
            poll = self._clock() + policy.poll_interval_ms / 1000
            self._deadlines[lane.key] = min(self._deadlines.get(lane.key, poll), poll)
            return []
        assert lane.pending[-1][1] == message.id, "offer() takes new messages only"
        lane.pending.pop()
        lane.in_flight[message.id] = message
        return [message]

    def wake(self) -> None:
        """Something may have become deliverable: the next `due()` should run now."""
        self._woken = self._clock()

    # --- delivering ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `due()` next has something to hand out (as far as timers can tell)."""
        deadlines = list(self._deadlines.values())
        if self._woken is not None:
            deadlines.append(self._woken)
        return min(deadlines, default=None)

    def due(self, only: LaneKey | None = None) -> list[Message]:
        """The messages to deliver now, marked in flight: of every lane, or of lane `only`
        (after one of its deliveries ended, only that lane can have changed)."""
        now = self._clock()
        out: list[Message] = []
        if only is None:
            self._woken = None
        for lane in self.lanes.values() if only is None else (self.lanes[only],):
            deadlines: list[float] = []
            if lane.pending and self._lane_open(lane.key):
                out.extend(self._take(lane, now, deadlines))
            if deadlines:
                self._deadlines[lane.key] = min(deadlines)
            else:
                self._deadlines.pop(lane.key, None)
        return out

    def _take(self, lane: Lane, now: float, deadlines: list[float]) -> Iterator[Message]:
        policy = self._policy_for(lane.key)
        if len(lane.in_flight) >= policy.concurrency:
            return
        blocked = set(lane.busy_groups)
        kept: list[tuple[int, str]] = []
        full = False
        for entry in lane.pending:
            message = self.live[entry[1]]
            group = _group(lane, message, policy)
            if full or (group is not None and group in blocked):
                kept.append(entry)
                continue
            if message.ready_at > now:
                deadlines.append(message.ready_at)
            elif not self._target_ready(message.namespace, message.function_id):
                deadlines.append(now + policy.poll_interval_ms / 1000)
            else:
                lane.in_flight[message.id] = message
                if group is not None:
                    lane.busy_groups.add(group)
                    blocked.add(group)
                full = len(lane.in_flight) >= policy.concurrency
                yield message
                continue
            if group is not None:
                blocked.add(group)  # later messages of its group wait behind it
            kept.append(entry)
        lane.pending = kept

    # --- outcomes ------------------------------------------------------------------------------

    def succeeded(self, message: Message) -> None:
        """Delivered (or consumed by a condition): the message is finished with."""
        self._land(message)
        del self.live[message.id]

    def failed(self, message: Message, error: str, now_ms: int) -> None:
        """One more attempt failed: retry after the backoff, or dead-letter the message
        once its attempts are used up (`message.dead` says which)."""
        lane = self._land(message)
        policy = self._policy_for(lane.key)
        message.attempts += 1
        if message.attempts >= policy.max_attempts:
            del self.live[message.id]
            message.dead, message.error, message.failed_ms = True, error, now_ms
            self.dead[message.id] = message
            return
        message.ready_at = self._clock() + policy.backoff(message.attempts)
        bisect.insort(lane.pending, (message.seq, message.id))

    def hold(self, message: Message) -> None:
        """Not delivered after all (its target was missing): no attempt is counted; it
        waits for its function, rechecked after the lane's poll interval."""
        lane = self._land(message)
        policy = self._policy_for(lane.key)
        message.ready_at = self._clock() + policy.poll_interval_ms / 1000
        bisect.insort(lane.pending, (message.seq, message.id))

    def _land(self, message: Message) -> Lane:
        lane = self.lanes[message.lane]
        del lane.in_flight[message.id]
        policy = self._policy_for(lane.key)
        group = _group(lane, message, policy)
        if group is not None:
            lane.busy_groups.discard(group)
        return lane

    # --- dead letters ---------------------------------------------------------------------------

    def redrive(self, messages: Iterable[Message]) -> list[Message]:
        """Give dead letters back to their lanes with their attempts reset."""
        out: list[Message] = []
        for message in messages:
            del self.dead[message.id]
            message.dead, message.attempts, message.ready_at = False, 0, 0.0
            message.error = message.failed_ms = None
            self.add(message)
            out.append(message)
        if out:
            self.wake()
        return out

    def discard(self, messages: Iterable[Message]) -> list[Message]:
        """Forget dead letters."""
        return [self.dead.pop(message.id) for message in messages]


def _group(lane: Lane, message: Message, policy: DeliveryPolicy) -> str | None:
    """The FIFO group a message belongs to in its lane (None: no ordering constraint)."""
    if not policy.fifo:
        return None
    return message.group if lane.key[0] == "queue" and message.group is not None else ""
