"""A TCP proxy on loopback that makes a local S3 server behave like object
storage across a network: every chunk the client sends reaches the server
``latency`` later (so each request pays it once, and concurrent requests pay it
concurrently), and responses share one bandwidth cap. Each HTTP request line
seen is printed ("GET /bucket/key"), so requests are counted at the wire.

    python benchmarks/latency_proxy.py --listen 9001 --target 9000 --latency-ms 20 --mbit 1000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time

REQUEST_LINE = re.compile(rb"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.[01]\r\n")


class Link:
    """The shared downstream bandwidth: a byte may leave no earlier than the
    link has finished sending the bytes before it."""

    def __init__(self, bytes_per_second: float):
        self.bytes_per_second = bytes_per_second
        self.free_at = 0.0

    def departure(self, size: int) -> float:
        now = time.monotonic()
        self.free_at = max(self.free_at, now) + size / self.bytes_per_second
        return self.free_at


async def _delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    """Client -> server: each chunk delivered ``latency`` after it arrived, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    tail = b""
    while data := await reader.read(1 << 16):
        queue.put_nowait((time.monotonic() + latency, data))
        seen = tail + data
        for match in REQUEST_LINE.finditer(seen):
            if match.end() > len(tail):  # not already counted in the previous chunk
                sys.stdout.write(f"{match[1].decode()} {match[2].decode().split('?')[0]}\n")
        sys.stdout.flush()
        tail = seen[-512:]
    queue.put_nowait((0.0, b""))
    await delivering


async def _capped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link) -> None:
    """Server -> client: at most the link's bandwidth, shared by all connections."""
    while data := await reader.read(1 << 16):
        await asyncio.sleep(max(0.0, link.departure(len(data)) - time.monotonic()))
        writer.write(data)
        await writer.drain()
    writer.close()


async def serve(listen: int, target: int, latency: float, link: Link) -> None:
    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_delayed(client_reader, server_writer, latency), _capped(server_reader, client_writer, link),
                             return_exceptions=True)

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--mbit", type=float, default=1000.0, help="downstream bandwidth cap, Mbit/s")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target, args.latency_ms / 1000, Link(args.mbit * 1e6 / 8)))


if __name__ == "__main__":
    main()
