"""Redis ceilings: what the server and redis-py manage with no job system.

    python redis_ceiling.py --url redis://127.0.0.1:PORT/0 --figure ceiling --jobs N

* ceiling_rtt_lpush: N synchronous LPUSH calls of a ~100-byte value, one
  command per round trip.  No one-at-a-time enqueue that needs at least one
  round trip per job can beat this from a single client.
* ceiling_rtt_raw: the same LPUSHes written and read on one redis-py
  ``Connection`` (``send_command`` + ``read_response``), skipping the
  client's per-call dispatch (pool checkout, retry wrapper): the cost of the
  round trip itself, which a library that talks to its connection directly
  can approach.
* ceiling_pipelined_lpush: the same LPUSHes sent 1000 per pipeline.
* redis_benchmark_*: ``redis-benchmark -q -n 100000 -t lpush,set,get -P 1``
  against the same server, when the tool is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from urllib.parse import urlparse

from common import Ctx, chunks, side_main

VALUE = b"x" * 100
KEY = "bench:ceiling"
BENCH_REQUESTS = 100_000


def _version() -> str:
    from importlib.metadata import version

    try:
        import hiredis  # noqa: F401

        parser = "hiredis"
    except ImportError:
        parser = "python parser"
    return f"redis-py {version('redis')} ({parser})"


def _redis_benchmark(url: str, ctx: Ctx) -> dict[str, float | None]:
    exe = shutil.which("redis-benchmark")
    names = ("lpush", "set", "get")
    if exe is None:
        ctx.notes.append("redis-benchmark not installed; its rows are empty")
        return {f"redis_benchmark_{n}": None for n in names}
    parsed = urlparse(url)
    argv = [
        exe,
        "-h", parsed.hostname or "127.0.0.1",
        "-p", str(parsed.port or 6379),
        "-q",
        "-n", str(BENCH_REQUESTS),
        "-t", ",".join(names),
        "-P", "1",
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False).stdout
    results: dict[str, float | None] = {f"redis_benchmark_{n}": None for n in names}
    # Progress lines end in '\r'; the final line per test reads
    # "SET: 123456.78 requests per second, p50=0.191 msec".
    for line in re.split(r"[\r\n]+", out):
        m = re.match(r"\s*([A-Z_]+)[^:]*:\s*([\d.]+)\s+requests per second", line)
        if m and m.group(1).lower() in names:
            results[f"redis_benchmark_{m.group(1).lower()}"] = float(m.group(2))
    return results


def ceiling(ctx: Ctx):
    conn = ctx.redis()
    conn.delete(KEY)
    for _ in range(100):  # warm-up
        conn.lpush(KEY, VALUE)

    started = time.perf_counter()
    for _ in range(ctx.jobs):
        conn.lpush(KEY, VALUE)
    rtt = ctx.jobs / (time.perf_counter() - started)

    raw = conn.connection_pool.make_connection()
    started = time.perf_counter()
    for _ in range(ctx.jobs):
        raw.send_command("LPUSH", KEY, VALUE)
        raw.read_response()
    rtt_raw = ctx.jobs / (time.perf_counter() - started)
    raw.disconnect()

    conn.delete(KEY)
    started = time.perf_counter()
    for n in chunks(ctx.jobs, 1000):
        pipe = conn.pipeline(transaction=False)
        for _ in range(n):
            pipe.lpush(KEY, VALUE)
        pipe.execute()
    pipelined = ctx.jobs / (time.perf_counter() - started)
    conn.delete(KEY)

    results: dict[str, float | None] = {
        "ceiling_rtt_lpush": round(rtt, 1),
        "ceiling_rtt_raw": round(rtt_raw, 1),
        "ceiling_pipelined_lpush": round(pipelined, 1),
    }
    results.update(_redis_benchmark(ctx.url, ctx))
    return results


if __name__ == "__main__":
    side_main("redis", _version, {"ceiling": ceiling})
