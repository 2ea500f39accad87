"""The iii project's SDK test config (`tests/data/iii-config-test.yaml`) on free ports.

`iii-stream` takes `${STREAMS_PORT:3112}`, so a test sets that variable; the other ports
are literal numbers (49199, 49135, 3199), so `fixture_copy` writes a copy of the file with
those numbers replaced by ports the OS just handed out (all bound to port 0 at once, then
released). The engine then serves the file's own ports, and they collide with nothing.
"""

from __future__ import annotations

import socket
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURE = DATA / "iii-config-test.yaml"


def free_ports(count: int) -> list[int]:
    """Ports the OS just handed out; all held until all are chosen, so they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


def fixture_copy(directory: Path) -> tuple[Path, dict[str, int]]:
    """The SDK fixture with its literal ports replaced by free ones, and the ports used."""
    worker, rbac, http, stream = free_ports(4)
    text = FIXTURE.read_text()
    for literal, port in ((49199, worker), (49135, rbac), (3199, http)):
        assert text.count(f"port: {literal}\n") == 1
        text = text.replace(f"port: {literal}\n", f"port: {port}\n")
    path = directory / "config.yaml"
    path.write_text(text)
    return path, {"worker": worker, "rbac": rbac, "http": http, "stream": stream}
