"""Real HTTP/2 byte streams for the tests: the `h2` library's client talking to its server, in memory.

`H2Pair` runs both ends so that flow control and SETTINGS are exchanged as on the wire; `transcript` keeps
every byte in the order it was sent, marked by direction, for feeding a parser. The server opens large
flow-control windows at once so bodies of any size can be sent without an application loop.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.settings

Headers = list[tuple[bytes, bytes]]


@dataclass
class Sent:
    """One request as the test sent it (what the parser must give back)."""

    method: str
    path: str
    authority: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    gzip: bool = False

    def header_block(self) -> Headers:
        block = [(b":method", self.method.encode()), (b":scheme", b"http"),
                 (b":authority", self.authority.encode()), (b":path", self.path.encode())]
        return block + [(n.encode(), v.encode()) for n, v in self.headers]

    def wire_body(self) -> bytes:
        return gzip.compress(self.body, mtime=0) if self.gzip else self.body


class H2Pair:
    def __init__(self, server_settings: dict[int, int] | None = None, *, upgrade: bool = False,
                 upgrade_settings: bytes | None = None) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                           header_encoding=None))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                           header_encoding=None))
        self.transcript: list[tuple[bool, bytes]] = []   # (from_client, bytes)
        if upgrade:
            settings = self.client.initiate_upgrade_connection()
            self.server.initiate_upgrade_connection(settings)
        else:
            self.client.initiate_connection()
            self.server.initiate_connection()
        self.server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1,
                                     **(server_settings or {})})
        self.server.increment_flow_control_window(2**31 - 1 - 65535)
        self.exchange()

    def exchange(self) -> None:
        """Deliver what each side has to send to the other until both are quiet."""
        while True:
            out = self.client.data_to_send()
            if out:
                self.transcript.append((True, out))
                self.server.receive_data(out)
            back = self.server.data_to_send()
            if back:
                self.transcript.append((False, back))
                self.client.receive_data(back)
            if not out and not back:
                return

    def client_bytes(self) -> bytes:
        return b"".join(d for c, d in self.transcript if c)

    def server_bytes(self) -> bytes:
        return b"".join(d for c, d in self.transcript if not c)
