"""Load client for the intake benchmarks (run as its own process: python -m bench._load).

Sends signed GitHub `issues` deliveries, each with a fresh delivery id, either closed-loop
(as fast as `--concurrency` connections allow) or open-loop at `--rate` per second.
Prints one JSON line: sent, acknowledged (2xx), errors, seconds, latencies (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import httpx

FIXTURE = (
    Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "github" / "issues.opened.json"
)


def request(secret: str) -> tuple[bytes, dict[str, str]]:
    body = FIXTURE.read_bytes()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-GitHub-Event": "issues",
        "X-Hub-Signature-256": sig,
        "Content-Type": "application/json",
    }


class _Conn:
    """One keep-alive HTTP/1.1 connection; far cheaper per request than a full client."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        reused = self.writer is not None
        status_line = await self._send(head.encode() + body)
        if not status_line and reused:
            # The server closed this keep-alive connection while it sat idle (uvicorn does
            # after 5 s): open a new one and send again, as HTTP clients do.
            assert self.writer is not None
            self.writer.close()
            self.writer = None
            status_line = await self._send(head.encode() + body)
        if not status_line:
            raise ConnectionResetError("connection closed before a response")
        assert self.reader is not None
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def _send(self, data: bytes) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        return await self.reader.readline()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--secret", default="bench-secret")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate", type=float, default=0, help="open loop at this many per second")
    args = ap.parse_args()
    url = httpx.URL(args.url)
    body, headers = request(args.secret)
    latencies: list[float] = []
    acked = errors = sent = 0
    idle: list[_Conn] = [_Conn(url.host, url.port or 80) for _ in range(args.concurrency)]
    free = asyncio.Semaphore(args.concurrency)

    async def one() -> None:
        nonlocal acked, errors, sent
        async with free:
            conn = idle.pop()
            sent += 1
            t0 = time.perf_counter()
            try:
                status = await conn.post(
                    url.raw_path.decode(), body, {**headers, "X-GitHub-Delivery": str(uuid.uuid4())}
                )
                ok = 200 <= status < 300
            except (OSError, ValueError, asyncio.IncompleteReadError):
                ok, conn = False, _Conn(url.host, url.port or 80)
            latencies.append((time.perf_counter() - t0) * 1000)
            idle.append(conn)
            if ok:
                acked += 1
            else:
                errors += 1

    start = time.perf_counter()
    deadline = start + args.seconds
    if args.rate:
        tasks = []
        i = 0
        while (now := time.perf_counter()) < deadline:
            due = start + i / args.rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one()))
            i += 1
        await asyncio.gather(*tasks)
    else:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one()

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "sent": sent,
                "acked": acked,
                "errors": errors,
                "seconds": elapsed,
                "latencies": latencies,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
