"""The budgets a server's connections share (`SharedBudget`, issue 14): when their sum
would pass the total, the offender gives way, not whoever crossed the line.

The offender is the peer address holding the most, and of its connections the one
holding the most. 127.0.0.2 plays the attacker against a well-behaved client on 127.0.0.1:
both are real sockets to a real `serve_websockets` server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import pytest
from transport_peers import TEXT, RawConnection, raw_client, raw_frame, websocket_server

from anyiii._errors import ConnectionClosed
from anyiii._transport import SendQueueFull, SharedBudget, Transport, TransportLimits

MiB = 2**20
ATTACKER = "127.0.0.2"


# --- the choice of the offender --------------------------------------------------------------


@dataclass(eq=False)
class Member:
    peer_host: str | None
    held: int
    gave_way: list[str] = field(default_factory=list)

    def share_of(self, budget: SharedBudget) -> int:
        return self.held

    def give_way(self, budget: SharedBudget) -> None:
        budget.used -= self.held
        self.held = 0
        self.gave_way.append(budget.reason)


class WatchedBudget(SharedBudget):
    """A budget that sets `reached` once `used` has grown to `threshold` bytes, so a test
    knows the server has read what was sent without polling."""

    def __init__(self, total: int, *, what: str, threshold: int) -> None:
        self.threshold = threshold
        self.reached = anyio.Event()
        self._value = 0
        super().__init__(total, what=what)

    @property  # type: ignore[override]
    def used(self) -> int:
        return self._value

    @used.setter
    def used(self, value: int) -> None:
        self._value = value
        if value >= self.threshold:
            self.reached.set()


def budget_of(total: int, *members: Member) -> SharedBudget:
    budget = SharedBudget(total, what="things")
    for member in members:
        budget.join(member)
        budget.used += member.held
    return budget


def test_the_peer_holding_the_most_gives_way_not_the_largest_connection() -> None:
    many_small = [Member("10.0.0.2", 30) for _ in range(4)]  # 120 from one address
    large = Member("10.0.0.1", 90)  # the largest single holder, from another address
    budget = budget_of(200, large, *many_small)
    assert budget.relieve(large) is True  # the grower stays
    assert large.gave_way == []
    assert sum(1 for m in many_small if m.gave_way) == 1  # 210 - 30 = 180 fits
    assert budget.used == 180 <= budget.total
    assert many_small[0].gave_way in ([], ["things over the server's budget of 200 bytes"])


def test_the_grower_is_told_when_it_is_the_offender() -> None:
    grower = Member("10.0.0.1", 150)
    other = Member("10.0.0.2", 60)
    budget = budget_of(200, grower, other)
    assert budget.relieve(grower) is False
    assert other.gave_way == []
    assert grower.gave_way == [budget.reason]
    assert budget.used == 60


def test_offenders_give_way_until_the_total_fits_and_unknown_peers_stand_alone() -> None:
    alone = [Member(None, 40) for _ in range(3)]  # no address: each its own peer
    grower = Member("10.0.0.1", 50)
    budget = budget_of(100, grower, *alone)  # 170: two of the 40s must go... or the 50
    assert budget.relieve(grower) is False  # 50 is the largest "peer"
    assert budget.used == 120
    assert budget.relieve(grower) is True  # a later call: the 40s go until it fits
    assert budget.used <= 100
    assert sum(1 for m in alone if m.gave_way) == 1


def test_nothing_to_relieve_within_the_total_and_validation() -> None:
    member = Member("10.0.0.1", 10)
    budget = budget_of(100, member)
    assert budget.relieve(member) is True
    assert member.gave_way == []
    assert budget.offender() is member
    budget.leave(member)
    assert budget.offender() is None
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="budget for things"):
            SharedBudget(bad, what="things")  # type: ignore[arg-type]


# --- unfinished messages over real sockets ---------------------------------------------------


async def attacker_and_client(
    port: int, attackers: int, held_each: int
) -> tuple[list[RawConnection], RawConnection]:
    """`attackers` connections from 127.0.0.2, each holding an unfinished message of
    `held_each` bytes (sent, never finished), and one client on 127.0.0.1."""
    peers = []
    for index in range(attackers):
        peer = await raw_client(port, f"/attacker-{index}", local_host=ATTACKER)
        announced = raw_frame(TEXT, b"a" * (held_each * 2))[: -(held_each * 2)]
        await peer.stream.send(announced + b"a" * held_each)
        peers.append(peer)
    client = await raw_client(port, "/client")
    return peers, client


@pytest.mark.parametrize("attackers", [1, 4])
async def test_a_silent_attacker_gives_way_to_a_clients_message(attackers: int) -> None:
    """The attacker (one connection, or four smaller ones that add up) holds most of the
    budget and goes silent; a client's message that crosses the total still arrives, and
    the attacker's connection is closed with 1009 although it never sends again."""
    held_each = 2 * MiB // attackers + MiB // 8  # 2.125 MiB from the attacker in all
    budget = WatchedBudget(3 * MiB, what="unfinished messages", threshold=attackers * held_each)
    message = b"m" * (5 * MiB // 4)  # 1.25 MiB: larger than any one attacker connection
    outcomes: dict[str, int | bytes] = {}
    arrived = anyio.Event()

    async def handler(transport: Transport) -> None:
        try:
            outcomes[transport.path] = await transport.receive()
        except ConnectionClosed as exc:
            outcomes[transport.path] = exc.code
        if transport.path == "/client":
            arrived.set()

    with anyio.fail_after(20):
        async with websocket_server(handler, limits=TransportLimits(unfinished_budget=budget)) as (
            port
        ):
            peers, client = await attacker_and_client(port, attackers, held_each)
            await budget.reached.wait()  # the server has read what the attacker sent
            await client.stream.send(raw_frame(TEXT, message))
            await arrived.wait()
            assert outcomes["/client"] == message
            gave_way = [p for p in peers if f"/attacker-{peers.index(p)}" in outcomes]
            assert gave_way, "an attacker connection was closed"
            for peer in gave_way:
                assert outcomes[f"/attacker-{peers.index(peer)}"] == 1009
                frame = await peer.next_frame()
                assert frame.opcode.name == "CLOSE"
                assert int.from_bytes(frame.data[:2], "big") == 1009
                assert b"unfinished messages over the server's budget" in frame.data
            assert budget.used <= budget.total
            for peer in [*peers, client]:
                await anyio.aclose_forcefully(peer.stream)
    assert budget.used == 0


# --- send queues over real sockets -----------------------------------------------------------


async def test_a_slow_consumer_gives_way_to_a_clients_send() -> None:
    """127.0.0.2 stops reading while 30 MiB are queued for it; a 9 MiB send to a client
    that reads then passes the 32 MiB budget: the slow consumer's queue is dropped and its
    connection ended (1008), the client gets its message."""
    budget = SharedBudget(32 * MiB, what="send queues")
    limits = TransportLimits(queue_budget=budget)
    chunk = b"s" * MiB
    queued_for_slow = anyio.Event()
    slow_outcome: list[int] = []
    slow_ended = anyio.Event()
    client_sent = anyio.Event()

    async def handler(transport: Transport) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport.run_writer)
            try:
                if transport.path == "/slow":
                    for _ in range(30):
                        transport.send_nowait(chunk)
                    queued_for_slow.set()
                    await transport.receive()  # silent peer: only giving way ends this
                else:
                    await queued_for_slow.wait()
                    assert budget.used >= 24 * MiB  # the kernel took at most a few MiB
                    transport.send_nowait(b"c" * (9 * MiB))
                    client_sent.set()
                    await transport.receive()
            except ConnectionClosed as exc:
                if transport.path == "/slow":
                    slow_outcome.append(exc.code)
                    slow_ended.set()
            tg.cancel_scope.cancel()

    with anyio.fail_after(30):
        async with websocket_server(handler, limits=limits) as port:
            slow = await raw_client(port, "/slow", local_host=ATTACKER, receive_buffer=4096)
            client = await raw_client(port, "/client", max_size=None)
            await client_sent.wait()
            frame = await client.next_frame()
            assert frame.data == b"c" * (9 * MiB)
            await slow_ended.wait()  # its receive ended although the peer stayed silent
            assert slow_outcome == [1008]
            assert budget.used == 0
            for peer in (slow, client):
                await anyio.aclose_forcefully(peer.stream)


async def test_a_send_that_makes_its_own_connection_the_offender_raises_send_queue_full() -> None:
    budget = SharedBudget(8 * MiB, what="send queues")
    raised: list[SendQueueFull] = []
    done = anyio.Event()

    async def handler(transport: Transport) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport.run_writer)
            try:
                for _ in range(40):
                    transport.send_nowait(b"s" * MiB)
            except SendQueueFull as exc:
                raised.append(exc)
            tg.cancel_scope.cancel()
        done.set()

    with anyio.fail_after(30):
        async with websocket_server(handler, limits=TransportLimits(queue_budget=budget)) as port:
            slow = await raw_client(port, "/slow", receive_buffer=4096)
            await done.wait()
            (exc,) = raised
            assert exc.code == 1008
            assert exc.reason == "send queues over the server's budget of 8388608 bytes"
            await anyio.aclose_forcefully(slow.stream)
    assert budget.used == 0
