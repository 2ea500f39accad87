"""`IncomingFrames` against websockets' own parser.

Any stream of frames a peer may send, cut into reads at any points, must come out of the
fast reader (its messages, plus the frames it hands to websockets) exactly as websockets
alone would have delivered it: the same messages in the same order, the same replies
(pongs, close echoes), the same final state.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from anyiii._transport.base import BinaryMessage
from anyiii._transport.frame_reader import Handoff, IncomingFrames

MAX_SIZE = 2048

payloads = st.binary(max_size=300) | st.binary(min_size=126, max_size=600)

data_frame = st.builds(
    lambda opcode, payload: [Frame(opcode, payload)],
    st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
    payloads,
)
fragmented = st.builds(
    lambda parts: (
        [Frame(Opcode.TEXT, parts[0], fin=False)]
        + [Frame(Opcode.CONT, part, fin=False) for part in parts[1:-1]]
        + [Frame(Opcode.CONT, parts[-1])]
    ),
    st.lists(st.binary(max_size=50), min_size=2, max_size=4),
)
ping = st.builds(lambda payload: [Frame(Opcode.PING, payload)], st.binary(max_size=20))
oversized = st.just([Frame(Opcode.TEXT, b"x" * (MAX_SIZE + 1))])
close = st.just([Frame(Opcode.CLOSE, Close(1000, "bye").serialize())])
with_rsv1 = st.builds(lambda payload: [("rsv1", payload)], st.binary(max_size=10))
"""A text frame with an extension bit set (serialized by hand: websockets refuses to)."""


def serialize(frame: Frame | tuple[str, bytes], mask: bool) -> bytes:
    if isinstance(frame, Frame):
        return frame.serialize(mask=mask)
    wire = bytearray(Frame(Opcode.TEXT, frame[1]).serialize(mask=mask))
    wire[0] |= 0x40
    return bytes(wire)


def protocol(server: bool) -> Any:
    if server:
        return ServerProtocol(state=State.OPEN, max_size=(MAX_SIZE, None))
    return ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=(MAX_SIZE, None))


def assemble(proto: Any, out: list[bytes], fragments: list[bytes]) -> None:
    for event in proto.events_received():
        if not isinstance(event, Frame):
            continue
        # The kind of the message being assembled rides on the first fragment's type.
        kind = BinaryMessage if event.opcode is Opcode.BINARY else bytes
        if event.opcode in (Opcode.TEXT, Opcode.BINARY):
            if event.fin:
                out.append(kind(event.data))
            else:
                fragments[:] = [kind(event.data)]
        elif event.opcode is Opcode.CONT:
            fragments.append(bytes(event.data))
            if event.fin:
                out.append(type(fragments[0])(b"".join(fragments)))
                fragments.clear()


def through_websockets(stream: bytes, server: bool) -> tuple[list[bytes], bytes, State]:
    proto = protocol(server)
    out: list[bytes] = []
    proto.receive_data(stream)
    assemble(proto, out, [])
    return out, b"".join(proto.data_to_send()), proto.state


def through_reader(chunks: list[bytes], server: bool) -> tuple[list[bytes], bytes, State]:
    proto = protocol(server)
    reader = IncomingFrames(masked=server, max_size=MAX_SIZE)
    out: list[bytes] = []
    fragments: list[bytes] = []
    for chunk in chunks:
        data = chunk
        while True:
            for item in reader.feed(data, open_=proto.state is State.OPEN):
                if type(item) is Handoff:
                    proto.receive_data(item)
                    assemble(proto, out, fragments)
                else:
                    out.append(item)
            if not reader.more:
                break
            data = b""
    return out, b"".join(proto.data_to_send()), proto.state


def frames_in(replies: bytes, sent_by_server: bool) -> list[tuple[Opcode, bytes, bool]]:
    """The frames in `replies`, parsed as their receiver would (a client's are masked with
    random keys, so their bytes differ from run to run)."""
    receiver = protocol(not sent_by_server)
    receiver.receive_data(replies)
    return [
        (event.opcode, bytes(event.data), event.fin)
        for event in receiver.events_received()
        if isinstance(event, Frame)
    ]


@settings(max_examples=300, deadline=None)
@given(
    server=st.booleans(),
    frames=st.lists(
        st.one_of(data_frame, data_frame, fragmented, ping, oversized, close, with_rsv1),
        max_size=12,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
)
def test_the_fast_reader_delivers_what_websockets_alone_delivers(
    server: bool, frames: list[list[Any]], cuts: list[int]
) -> None:
    stream = b"".join(serialize(frame, server) for group in frames for frame in group)
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    expected_messages, expected_replies, expected_state = through_websockets(stream, server)
    messages, replies, state = through_reader(chunks, server)
    assert messages == expected_messages
    assert [type(m) for m in messages] == [type(m) for m in expected_messages]  # text/binary
    assert frames_in(replies, server) == frames_in(expected_replies, server)
    assert state == expected_state


def test_frames_from_the_wrong_side_go_to_websockets() -> None:
    """An unmasked frame sent to a server is websockets' to refuse (a protocol error)."""
    reader = IncomingFrames(masked=True, max_size=MAX_SIZE)
    frame = Frame(Opcode.TEXT, b"hello").serialize(mask=False)
    (item,) = reader.feed(frame, open_=True)
    assert type(item) is Handoff
    assert item == frame


def test_a_partial_frame_waits_for_the_rest_and_is_given_back_at_the_end() -> None:
    reader = IncomingFrames(masked=False, max_size=MAX_SIZE)
    frame = Frame(Opcode.TEXT, b"x" * 300).serialize(mask=False)
    assert reader.feed(frame[:3], open_=True) == []
    assert reader.feed(frame[3:200], open_=True) == []
    assert bytes(reader.leftover()) == frame[:200]
    assert reader.feed(frame, open_=True) == [b"x" * 300]


def test_head_end_finds_the_blank_line_even_across_reads() -> None:
    from anyiii._transport.wire import head_end

    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert head_end(b"", head + b"\x81\x05") == len(head)
    for cut in range(1, len(head)):
        first, second = head[:cut], head[cut:] + b"frame"
        found = head_end(b"", first)
        if found < 0:
            assert head_end(first, second) == len(second) - len(b"frame")
        else:
            assert found == len(first)  # the blank line ended in the first read
    assert head_end(b"", b"GET / HTTP/1.1\r\nHost: x\r\n") == -1
