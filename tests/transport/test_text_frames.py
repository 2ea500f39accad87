"""The transport's own text-frame builder against websockets' reference framing."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.utils import apply_mask

from anyiii._transport.websocket import MaskSource, _text_frame

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("size", SIZES)
def test_server_frames_are_byte_for_byte_what_websockets_writes(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False)
    assert _text_frame(payload, None) == expected


@pytest.mark.parametrize("size", SIZES)
def test_client_frames_are_masked_and_unmask_to_the_payload(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    frame = _text_frame(payload, MaskSource())
    reference = Frame(Opcode.TEXT, payload).serialize(mask=True)
    header_length = len(reference) - size - 4
    assert frame[:header_length] == reference[:header_length]  # FIN, opcode, MASK, length
    mask = frame[header_length : header_length + 4]
    assert apply_mask(frame[header_length + 4 :], mask) == payload
    assert len(frame) == len(reference)


def test_masks_differ_between_frames_and_across_refills() -> None:
    """Each frame takes the next four bytes of the block; a spent block is replaced by a
    new random one, so keys never repeat in a pattern."""
    source = MaskSource()
    keys = [_text_frame(b"x", source)[2:6] for _ in range(3 * MaskSource.BLOCK // 4)]
    assert all(len(key) == 4 for key in keys)
    # 768 random 32-bit keys: a repeat has odds of about 1 in 15,000.
    assert len(set(keys)) >= len(keys) - 1
    blocks = [b"".join(keys[i : i + 256]) for i in range(0, len(keys), 256)]
    assert len(set(blocks)) == 3
