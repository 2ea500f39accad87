"""The transport's own text-frame builder against websockets' reference framing."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.utils import apply_mask

from anyiii._transport.websocket import _text_frame

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("size", SIZES)
def test_server_frames_are_byte_for_byte_what_websockets_writes(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False)
    assert _text_frame(payload, masked=False) == expected


@pytest.mark.parametrize("size", SIZES)
def test_client_frames_are_masked_and_unmask_to_the_payload(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    frame = _text_frame(payload, masked=True)
    reference = Frame(Opcode.TEXT, payload).serialize(mask=True)
    header_length = len(reference) - size - 4
    assert frame[:header_length] == reference[:header_length]  # FIN, opcode, MASK, length
    mask = frame[header_length : header_length + 4]
    assert apply_mask(frame[header_length + 4 :], mask) == payload
    assert len(frame) == len(reference)


def test_masks_differ_between_frames() -> None:
    masks = {_text_frame(b"x", masked=True)[2:6] for _ in range(20)}
    assert len(masks) > 1
