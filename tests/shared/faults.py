"""Broker faults for tests: close a client's connection from RabbitMQ's side, as a broker restart or
a network cut looks to the client, without touching anyone else's connections."""

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
