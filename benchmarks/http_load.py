"""HTTP load from a separate process, to 127.0.0.1 only, bounded in time and in requests.

``run_load`` uses ``wrk`` (Debian package) with the Lua script below when it is installed, and
otherwise this module's own client, run as a child process::

    python -m benchmarks.http_load --port P --path /tasks --connections 16 --duration 10 \
        [--body JSON --expect 202] [--rate 1000] [--ids FILE] [--max-requests N]

The Python client keeps one HTTP/1.1 keep-alive connection per ``--connections`` (asyncio, one
process), sends the next request as soon as the answer to the previous one has arrived, and
records every latency. With ``--rate`` it sends at that many requests per second overall
instead (each request has a scheduled time; a connection waits for it), which wrk cannot do;
the window case uses that. Both print one JSON line with the same fields (see LoadResult).

Both count a response as *ok* only with the expected status, and with ``--ids`` write the id of
every accepted task (from ``{"id": …}`` in the body) to a file, so the caller can check that
each one is in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.procs import REPO_ROOT, BenchmarkError, child_env, last_json_line
from benchmarks.report import percentile

HOST = "127.0.0.1"  # the only address any load is sent to
MAX_DURATION = 120.0
MAX_CONNECTIONS = 256
DEFAULT_MAX_REQUESTS = 1_000_000
REQUEST_TIMEOUT = 5.0

WRK_SCRIPT = r"""
-- Taskdesk benchmarks: one fixed request per connection, expected status counted, accepted
-- task ids collected (BENCH_IDS), at most BENCH_MAX responses per wrk thread, results
-- printed as one JSON line by done().
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, unexpected, ids = 0, 0, {}
  expected = tonumber(os.getenv("BENCH_EXPECT"))
  max_requests = tonumber(os.getenv("BENCH_MAX"))
  keep_ids = os.getenv("BENCH_IDS") ~= nil
  local body = os.getenv("BENCH_BODY")
  local headers = {}
  local method = "GET"
  if body ~= nil then
    method = "POST"
    headers["Content-Type"] = "application/json"
  end
  request_text = wrk.format(method, os.getenv("BENCH_PATH"), headers, body)
end

function request()
  return request_text
end

function response(status, headers, body)
  if status == expected then
    ok = ok + 1
    if keep_ids then
      local id = string.match(body, '"id":%s*"([^"]+)"')
      if id then ids[#ids + 1] = id end
    end
  else
    unexpected = unexpected + 1
  end
  if ok + unexpected >= max_requests then
    wrk.thread:stop()  -- bounded in count as well as in time
  end
end

function done(summary, latency, requests)
  local ok_total, unexpected_total = 0, 0
  local ids_path = os.getenv("BENCH_IDS")
  local out = nil
  if ids_path then out = io.open(ids_path, "w") end
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    unexpected_total = unexpected_total + thread:get("unexpected")
    if out then
      for _, id in ipairs(thread:get("ids")) do out:write(id, "\n") end
    end
  end
  if out then out:close() end
  local e = summary.errors
  io.write(string.format(
    '{"tool":"wrk","requests":%d,"seconds":%.6f,"ok":%d,"unexpected":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, ok_total, unexpected_total,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


@dataclass(frozen=True)
class LoadResult:
    tool: str  # "wrk" or "python"
    requests: int  # responses received
    seconds: float  # length of the run
    ok: int  # responses with the expected status
    unexpected: int  # responses with another status
    socket_errors: int  # connect, read and write errors
    timeouts: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.unexpected + self.socket_errors + self.timeouts

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LoadResult:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})  # type: ignore[arg-type]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_load(
    port: int,
    path: str,
    *,
    connections: int,
    duration: float,
    body: str | None = None,
    expect: int = 200,
    ids_path: Path | None = None,
    rate: float | None = None,
    use_wrk: bool = True,
) -> LoadResult:
    """Load ``http://127.0.0.1:PORT/PATH`` from a separate process; wrk unless *rate* is set
    or wrk is missing."""
    if not 0 < duration <= MAX_DURATION or not 0 < connections <= MAX_CONNECTIONS:
        raise ValueError("duration or connections out of bounds")
    if use_wrk and rate is None and wrk_available():
        return _run_wrk(port, path, connections, duration, body, expect, ids_path)
    args = [sys.executable, "-m", "benchmarks.http_load", "--port", str(port), "--path", path,
            "--connections", str(connections), "--duration", str(duration),
            "--expect", str(expect)]
    if body is not None:
        args += ["--body", body]
    if ids_path is not None:
        args += ["--ids", str(ids_path)]
    if rate is not None:
        args += ["--rate", str(rate)]
    return LoadResult.from_json(_run(args, duration))


def _run_wrk(port: int, path: str, connections: int, duration: float, body: str | None,
             expect: int, ids_path: Path | None) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="taskdesk-wrk-") as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        env = {"BENCH_PATH": path, "BENCH_EXPECT": str(expect),
               "BENCH_MAX": str(DEFAULT_MAX_REQUESTS)}
        if body is not None:
            env["BENCH_BODY"] = body
        if ids_path is not None:
            env["BENCH_IDS"] = str(ids_path)
        args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s",
                "--timeout", f"{REQUEST_TIMEOUT:g}s", "-s", str(script),
                f"http://{HOST}:{port}{path}"]
        return LoadResult.from_json(_run(args, duration, env))


def _run(args: list[str], duration: float, extra_env: dict[str, str] | None = None
         ) -> dict[str, object]:
    timeout = duration + 60
    try:
        done = subprocess.run(args, cwd=REPO_ROOT, env=child_env(extra_env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{args[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise BenchmarkError(f"{args[0]} exited with {done.returncode}: {done.stderr[-500:]}")
    try:
        return last_json_line(done.stdout)
    except (BenchmarkError, ValueError):
        raise BenchmarkError(f"no result from {args[0]}: {done.stdout[-500:]}") from None


# -- the Python client ----------------------------------------------------------------------


@dataclass
class _Tally:
    ok: int = 0
    unexpected: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    sent: int = 0


_ID = re.compile(rb'"id":\s*"([^"]+)"')


class _Client:
    def __init__(self, port: int, path: str, body: str | None, expect: int, duration: float,
                 max_requests: int, rate: float | None, keep_ids: bool) -> None:
        headers = [f"Host: {HOST}:{port}", "Connection: keep-alive"]
        method = "GET"
        payload = b""
        if body is not None:
            method = "POST"
            payload = body.encode()
            headers += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        head = f"{method} {path} HTTP/1.1\r\n" + "\r\n".join(headers) + "\r\n\r\n"
        self.request = head.encode() + payload
        self.port = port
        self.expect = expect
        self.duration = duration
        self.max_requests = max_requests
        self.rate = rate
        self.keep_ids = keep_ids
        self.latencies: list[float] = []
        self.ids: list[bytes] = []
        self.tally = _Tally()
        self.start = 0.0
        self.deadline = 0.0

    async def run(self, connections: int) -> float:
        self.start = time.perf_counter()
        self.deadline = self.start + self.duration
        await asyncio.gather(*(self._connection() for _ in range(connections)))
        return time.perf_counter() - self.start

    def _next_slot(self) -> float | None:
        """The time the next request may be sent, or None when the run is over."""
        if self.tally.sent >= self.max_requests:
            return None
        slot = self.start + self.tally.sent / self.rate if self.rate else time.perf_counter()
        if slot >= self.deadline:
            return None
        self.tally.sent += 1
        return slot

    async def _connection(self) -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while (slot := self._next_slot()) is not None:
                wait = slot - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                if conn is None:
                    conn = await self._connect()
                    if conn is None:
                        continue
                if not await self._exchange(*conn):
                    conn[1].close()
                    conn = None
        finally:
            if conn is not None:
                conn[1].close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.wait_for(asyncio.open_connection(HOST, self.port),
                                          REQUEST_TIMEOUT)
        except (OSError, TimeoutError):
            self.tally.socket_errors += 1
            await asyncio.sleep(0.01)
            return None

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> bool:
        """One request and its response; False when the connection cannot be used again."""
        sent = time.perf_counter()
        try:
            writer.write(self.request)
            status, body, close = await asyncio.wait_for(_read_response(reader),
                                                         REQUEST_TIMEOUT)
        except TimeoutError:
            self.tally.timeouts += 1
            return False
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.tally.socket_errors += 1
            return False
        self.latencies.append(time.perf_counter() - sent)
        self._count(status, body)
        return not close

    def _count(self, status: int, body: bytes) -> None:
        if status != self.expect:
            self.tally.unexpected += 1
            return
        self.tally.ok += 1
        if self.keep_ids:
            match = _ID.search(body)
            if match:
                self.ids.append(match[1])


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server closes the connection) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        body = b"".join(parts)
    else:
        raise ValueError("response without a length")
    return status, body, headers.get("connection") == "close"


def python_client(args: argparse.Namespace) -> dict[str, object]:
    client = _Client(args.port, args.path, args.body, args.expect, args.duration,
                     args.max_requests, args.rate, args.ids is not None)
    seconds = asyncio.run(client.run(args.connections))
    if args.ids is not None:
        Path(args.ids).write_bytes(b"".join(i + b"\n" for i in client.ids))
    lat = client.latencies
    t = client.tally
    result = LoadResult(
        tool="python", requests=len(lat), seconds=seconds, ok=t.ok, unexpected=t.unexpected,
        socket_errors=t.socket_errors, timeouts=t.timeouts,
        p50_ms=percentile(lat, 50) * 1000, p99_ms=percentile(lat, 99) * 1000,
        max_ms=max(lat, default=float("nan")) * 1000,
    )
    return asdict(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bounded keep-alive HTTP load on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/tasks")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--body", help="JSON body: the requests are POSTs")
    parser.add_argument("--expect", type=int, default=200, help="the status that counts as ok")
    parser.add_argument("--rate", type=float, help="requests per second overall (default: "
                        "as fast as the answers come)")
    parser.add_argument("--ids", help="write the ids of accepted tasks to this file")
    parser.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS)
    args = parser.parse_args(argv)
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    if not 0 < args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be in (0, {MAX_CONNECTIONS}]")
    if not 0 < args.max_requests <= DEFAULT_MAX_REQUESTS:
        parser.error(f"--max-requests must be in (0, {DEFAULT_MAX_REQUESTS}]")
    print(json.dumps(python_client(args)), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
