"""Faults for tests, without touching anyone else's connections: close a client's connection from
RabbitMQ's side (as a broker restart looks to it), or cut a server off behind a proxy."""

from __future__ import annotations

import asyncio
import json


async def close_broker_connection(client_name: str) -> int:
    """Close every connection the client named `client_name` (broker.connect(name=...)); how many."""
    listing = await _rabbitmqctl("list_connections", "pid", "client_properties", "--no-table-headers")
    wanted = f'{{"connection_name",{json.dumps(client_name)}}}'
    names = [line.split("\t", 1)[0] for line in listing.splitlines() if wanted in line]
    for name in names:
        await _rabbitmqctl("close_connection", name, "test: connection cut")
    return len(names)


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args[0]} failed: {err.decode()}"
    return out.decode()


class TcpProxy:
    """A TCP proxy in front of RabbitMQ or Postgres for one test's clients: `cut()` drops every
    connection through it and refuses new ones (the server is down, as far as they can tell),
    `restore()` lets them back, on the same port."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        """Accept connections (again, on the same port)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )
        for end in (writer, upstream_writer):
            end.transport.abort()
            self._writers.discard(end)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()
