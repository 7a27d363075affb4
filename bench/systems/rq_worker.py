"""Run one RQ worker (used by rq_side.py as a subprocess).

Sets ``--ready-key`` to the current time just before entering the work loop,
so the caller can wait for it and time things from there.
"""

from __future__ import annotations

import argparse
import os
import time

import redis
from rq import Queue, SimpleWorker, Worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("BENCH_REDIS_URL"))
    parser.add_argument("--queue", required=True)
    parser.add_argument("--kind", choices=("simple", "fork"), default="simple")
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--with-scheduler", action="store_true")
    parser.add_argument("--ready-key", default="bench:worker:ready")
    args = parser.parse_args()

    conn = redis.Redis.from_url(args.url)
    cls = SimpleWorker if args.kind == "simple" else Worker
    worker = cls([Queue(args.queue, connection=conn)], connection=conn)
    conn.set(args.ready_key, repr(time.time()))
    worker.work(burst=args.burst, with_scheduler=args.with_scheduler)


if __name__ == "__main__":
    main()
