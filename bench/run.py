#!/usr/bin/env python3
"""Benchmark harness: tasks_rq against RQ (and optionally huey / dramatiq).

    python bench/run.py [--quick] [--jobs N] [--with-peers] [--only FIG,...] [--json FILE]

Starts a private redis-server on a free 127.0.0.1 port, makes sure the
comparison virtualenv (bench/.venv-peers) exists, then runs every figure for
every system in its own subprocess (bench/systems/<system>_side.py) and prints
one table.  See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
SYSTEMS_DIR = os.path.join(BENCH_DIR, "systems")
PEERS_VENV = os.path.join(BENCH_DIR, ".venv-peers")
RQ_REQUIREMENT = "rq==2.12.0"
PEER_REQUIREMENTS = ("huey", "dramatiq[redis]")

sys.path.insert(0, SYSTEMS_DIR)
import spec  # noqa: E402  (stdlib-only contract shared with the side scripts)

# Job counts per figure: (full run, --quick run).  --jobs N replaces the
# counts of the throughput figures marked True.
JOB_COUNTS: dict[str, tuple[int, int, bool]] = {
    "enqueue_one": (10_000, 3_000, True),
    "enqueue_batch": (50_000, 10_000, True),
    "worker_noop": (10_000, 2_000, True),
    "lateness": (200, 200, False),
    "promote_100k": (spec.PROMOTE_TARGET, 10_000, False),
    "memory_scheduled": (spec.MEMORY_JOBS, spec.MEMORY_JOBS, False),
    "memory_queued": (spec.MEMORY_JOBS, spec.MEMORY_JOBS, False),
    "idle_worker_rss": (1, 1, False),
    "takeover": (5, 3, False),  # trials
    "recovery": (2, 1, False),  # trials
    "ceiling": (20_000, 10_000, False),
}


@dataclass(frozen=True)
class System:
    name: str  # key in results
    column: str  # table header
    script: str  # file in bench/systems
    venv: str  # "project" (the interpreter running this file) or "peers"
    peer: bool = False  # only with --with-peers


SYSTEMS = (
    System("tasks_rq", "tasks_rq", "tasks_rq_side.py", "project"),
    System("rq", "RQ", "rq_side.py", "peers"),
    System("huey", "huey", "huey_side.py", "peers", peer=True),
    System("dramatiq", "dramatiq", "dramatiq_side.py", "peers", peer=True),
)
CEILING = System("redis", "ceiling", "redis_ceiling.py", "project")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# redis-server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_command(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command and return the first reply line (enough for PING/FLUSHALL)."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(raw), raw)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


def cpu_plan(pin: bool) -> tuple[set[int], set[int]] | None:
    """(redis CPUs, client CPUs), or None when not pinning.

    Redis gets the last usable CPU and every side script (with its workers)
    the others.  Unpinned, a round trip costs several times more whenever the
    kernel happens to put client and server on different cores, and the
    numbers swing from run to run; pinned, every run pays the cross-core
    cost, which is also closer to a Redis on another host.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def _pinned(cpus: set[int] | None):
    """A preexec_fn that moves the child onto ``cpus`` before it runs."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class RedisServer:
    def __init__(self, cpus: set[int] | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self.tmp = tempfile.mkdtemp(prefix="bench-redis-")
        self.port = _free_port()
        argv = [
            exe,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.tmp,
            "--logfile", os.path.join(self.tmp, "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pinned(cpus),
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis_command(self.port, "PING") == b"+PONG":
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("redis-server did not come up within 10 s")
            time.sleep(0.05)
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        self.version = out.split("v=")[1].split()[0] if "v=" in out else out.strip()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        redis_command(self.port, "FLUSHALL")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# The comparison virtualenv


def _venv_python() -> str:
    return os.path.join(PEERS_VENV, "bin", "python")


def _venv_has(dist: str, version: str | None = None) -> bool:
    code = (
        "import importlib.metadata as m, sys\n"
        f"v = m.version({dist!r})\n"
        f"sys.exit(0 if {version!r} in (None, v) else 1)\n"
    )
    try:
        return (
            subprocess.run([_venv_python(), "-c", code], capture_output=True, timeout=60).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pip(*requirements: str) -> None:
    log_path = os.path.join(PEERS_VENV, "install.log")
    log(f"installing {' '.join(requirements)} into bench/.venv-peers ...")
    with open(log_path, "a", encoding="utf-8") as fh:
        rc = subprocess.run(
            [_venv_python(), "-m", "pip", "install", *requirements],
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=600,
        ).returncode
    if rc != 0:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            tail = fh.read()[-3000:]
        raise SystemExit(f"pip install failed (see bench/.venv-peers/install.log):\n{tail}")


def ensure_peers_venv(with_peers: bool) -> None:
    python_ok = False
    if os.path.exists(_venv_python()):
        try:
            python_ok = subprocess.run([_venv_python(), "-c", "pass"], timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            python_ok = False
    if not python_ok:
        shutil.rmtree(PEERS_VENV, ignore_errors=True)
        log("creating bench/.venv-peers ...")
        subprocess.run([sys.executable, "-m", "venv", PEERS_VENV], check=True, timeout=300)
    if not _venv_has("rq", RQ_REQUIREMENT.split("==")[1]):
        _pip(RQ_REQUIREMENT)
    if with_peers and not (_venv_has("huey") and _venv_has("dramatiq") and _venv_has("redis")):
        _pip(*PEER_REQUIREMENTS)


# --------------------------------------------------------------------------
# Running one side script


def side_timeout(figure: str, jobs: int) -> float:
    """Outer limit for one side run; the side's own waits are shorter."""
    return {
        "enqueue_one": 60 + jobs / 100,
        "enqueue_batch": 60 + jobs / 500,
        "worker_noop": 180 + jobs * 0.05,
        "lateness": 90 + jobs * spec.LATENESS_SPACING_S,
        "promote_100k": 180 + jobs * 0.01,
        "memory_scheduled": 60 + jobs / 100,
        "memory_queued": 60 + jobs / 100,
        "idle_worker_rss": 120,
        "takeover": 60 + jobs * 20,
        "recovery": 60 + jobs * 90,
        "ceiling": 240,
    }[figure]


def _side_env(system: System, url: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["BENCH_REDIS_URL"] = url
    env["PYTHONUNBUFFERED"] = "1"
    paths = [SYSTEMS_DIR]
    if system.name == "tasks_rq":
        paths.append(REPO_ROOT)  # import tasks_rq from the work tree
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if system.venv == "peers":
        env["VIRTUAL_ENV"] = PEERS_VENV
        env["PATH"] = os.path.join(PEERS_VENV, "bin") + os.pathsep + env.get("PATH", "")
    return env


def run_side(
    system: System, figure: str, jobs: int, server: RedisServer, cpus: set[int] | None = None
) -> dict:
    python = sys.executable if system.venv == "project" else _venv_python()
    argv = [
        python,
        os.path.join(SYSTEMS_DIR, system.script),
        "--url",
        server.url,
        "--figure",
        figure,
        "--jobs",
        str(jobs),
    ]
    server.flush()
    limit = side_timeout(figure, jobs)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_side_env(system, server.url),
        cwd=SYSTEMS_DIR,
        text=True,
        start_new_session=True,
        preexec_fn=_pinned(cpus),
    )
    try:
        out, err = proc.communicate(timeout=limit)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.send_signal(signal.SIGTERM)  # the side cleans up its workers on SIGTERM
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=20)
    wall = time.monotonic() - started

    result = None
    for line in reversed((out or "").splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if result is None or timed_out:
        reason = (
            f"timed out after {limit:.0f} s"
            if timed_out
            else f"exit code {proc.returncode}, no JSON line"
        )
        result = {
            "system": system.name,
            "figure": figure,
            "jobs": jobs,
            "status": spec.ERROR,
            "metrics": {},
            "error": reason,
            "extra": {},
            "notes": [],
        }
    if result.get("status") == spec.ERROR:
        result["stderr_tail"] = (err or "")[-2000:]
    result["wall_s"] = round(wall, 2)
    return result


# --------------------------------------------------------------------------
# Table


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(better: str, ours: float | None, theirs: float | None) -> float | None:
    """> 1 means tasks_rq is better, whatever the direction of the metric."""
    if ours is None or theirs is None:
        return None
    if better == "higher":
        return ours / theirs if theirs > 0 and ours >= 0 else None
    if better == "lower":
        return theirs / ours if ours > 0 and theirs >= 0 else None
    if better == "zero":
        return abs(theirs) / abs(ours) if ours != 0 else None
    raise ValueError(better)


def cell(result: dict | None, key: str) -> tuple[str, float | None]:
    if result is None:
        return "", None
    status = result.get("status")
    if status == spec.NOT_IMPLEMENTED:
        return "n/i", None
    if status != spec.OK:
        return "ERR", None
    value = result.get("metrics", {}).get(key)
    text = fmt(value)
    if value is not None and result.get("extra", {}).get("extrapolated"):
        text += "*"
    return text, value


# Rows whose tasks_rq side also measures its ratio to the ceiling in one process,
# alternating rounds (steadier than two figures taken a minute apart).
INTERLEAVED = {"enqueue_one": "interleaved_of_redis_py_loop"}


def build_rows(
    results: dict[tuple[str, str], dict], systems: list[System], ceiling: dict | None
) -> list[dict]:
    ceiling_for = {"enqueue_one": "ceiling_rtt_lpush", "enqueue_batch": "ceiling_pipelined_lpush"}
    ceiling_metrics = (
        (ceiling or {}).get("metrics", {}) if (ceiling or {}).get("status") == spec.OK else {}
    )
    rows = []
    for figure in spec.FIGURES:
        if not any((s.name, figure.name) in results for s in systems):
            continue
        for metric in figure.metrics:
            row = {
                "figure": metric.key,
                "unit": metric.unit,
                "better": metric.better,
                "cells": {},
                "values": {},
            }
            for s in systems:
                text, value = cell(results.get((s.name, figure.name)), metric.key)
                row["cells"][s.name] = text
                row["values"][s.name] = value
            row["ratio"] = ratio(
                metric.better, row["values"].get("tasks_rq"), row["values"].get("rq")
            )
            ceil_key = ceiling_for.get(metric.key)
            row["ceiling"] = ceiling_metrics.get(ceil_key) if ceil_key else None
            ours = results.get(("tasks_rq", figure.name), {})
            row["of_ceiling"] = ours.get("extra", {}).get(INTERLEAVED.get(metric.key, ""))
            rows.append(row)
    if ceiling is not None:
        for metric in spec.CEILING_FIGURE.metrics:
            text, value = cell(ceiling, metric.key)
            rows.append(
                {
                    "figure": metric.key,
                    "unit": metric.unit,
                    "better": metric.better,
                    "cells": {s.name: "" for s in systems},
                    "values": {},
                    "ratio": None,
                    "ceiling": value,
                    "ceiling_text": text,
                }
            )
    return rows


def render(rows: list[dict], systems: list[System]) -> str:
    header = (
        ["figure", "unit", "tasks_rq", "RQ", "ratio"]
        + [s.column for s in systems if s.peer]
        + ["ceiling", "of ceiling"]
    )
    table = [header]
    for row in rows:
        line = [
            row["figure"],
            row["unit"],
            row["cells"].get("tasks_rq", ""),
            row["cells"].get("rq", ""),
        ]
        r = row["ratio"]
        line.append(f"{r:.2f}x" if r is not None else "")
        line += [row["cells"].get(s.name, "") for s in systems if s.peer]
        line.append(
            row.get("ceiling_text") or (fmt(row["ceiling"]) if row["ceiling"] is not None else "")
        )
        ours, limit = row["values"].get("tasks_rq"), row["ceiling"]
        if row.get("of_ceiling") is not None:
            line.append(f"{row['of_ceiling']:.0%}i")
        else:
            line.append(f"{ours / limit:.0%}" if ours is not None and limit else "")
        table.append(line)
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    out = []
    for n, r in enumerate(table):
        cells = [
            str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i]) for i, c in enumerate(r)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


LEGEND = """\
ratio: > 1 means tasks_rq is better. jobs/s and ops/s rows: tasks_rq / RQ.
  ms, s, B/job and MB rows: RQ / tasks_rq (lower is better).
  lateness rows: |RQ| / |tasks_rq| (closer to zero is better; negative = started early).
ceiling: what Redis + redis-py do alone; on enqueue rows, the matching limit
  (one redis-py LPUSH per round trip / LPUSH pipelined 1000 at a time), and
  "of ceiling" = tasks_rq / that limit; "i": measured interleaved instead, as the
  median ratio of rounds of delay() alternating with the LPUSH loop in one process.
n/i = not implemented for that system, ERR = failed (see --json), * = extrapolated."""


def print_report(
    rows: list[dict], results: dict[tuple[str, str], dict], systems: list[System], ceiling
) -> None:
    """Print the table, its legend and every side's notes."""
    print()
    print(render(rows, systems))
    print()
    print(LEGEND)
    notes: list[str] = []
    missing: dict[str, list[str]] = {}
    for res in list(results.values()) + ([ceiling] if ceiling else []):
        if res.get("status") == spec.NOT_IMPLEMENTED:
            missing.setdefault(res["system"], []).append(res["figure"])
            notes += [
                f"  [{res['system']} {res['figure']}] {note}"
                for note in res.get("notes", [])
                if "has no '" not in note
            ]
            continue
        for note in res.get("notes", []):
            notes.append(f"  [{res['system']} {res['figure']}] {note}")
        if res.get("status") == spec.ERROR:
            notes.append(f"  [{res['system']} {res['figure']}] ERROR: {res.get('error')}")
    for system, figures in missing.items():
        notes.append(f"  [{system}] not implemented: {', '.join(figures)}")
    if notes:
        print("notes:")
        print("\n".join(notes))


def render_saved(path: str) -> int:
    """Print the table of a run saved with --json (e.g. after changing the table code)."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    meta = doc["meta"]
    systems = [s for s in SYSTEMS if meta.get("with_peers") or not s.peer]
    results = {(r["system"], r["figure"]): r for r in doc["results"] if r["system"] != "redis"}
    ceiling = next((r for r in doc["results"] if r["system"] == "redis"), None)
    print_report(build_rows(results, systems, ceiling), results, systems, ceiling)
    print(
        f"run of {meta['when']}; redis {meta['redis_version']}; python {meta['python']}; "
        f"{meta['cpus']} CPUs; {meta['pinning']}; 1-min load {meta['load_before']:.2f} "
        f"before, {meta['load_after']:.2f} after; total time {meta['total_s']:.0f} s"
    )
    return 0


# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="tasks_rq vs RQ benchmark")
    p.add_argument("--quick", action="store_true", help="smaller job counts (about 1-2 minutes)")
    p.add_argument(
        "--jobs", type=int, help="job count for enqueue_one, enqueue_batch and worker_noop"
    )
    p.add_argument(
        "--promote-jobs",
        type=int,
        help="jobs actually scheduled for promote_100k (extrapolated to 100k)",
    )
    p.add_argument("--with-peers", action="store_true", help="also run huey and dramatiq")
    names = [*spec.FIGURE_NAMES, "ceiling"]
    p.add_argument("--only", help="comma-separated figures: " + ",".join(names))
    p.add_argument("--json", metavar="FILE", help="also write all results to FILE")
    p.add_argument(
        "--render", metavar="FILE", help="only print the table of a run saved with --json"
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin redis-server and the clients to separate CPUs",
    )
    args = p.parse_args(argv)
    if args.only:
        wanted = [f.strip() for f in args.only.split(",") if f.strip()]
        unknown = [f for f in wanted if f not in names]
        if unknown:
            p.error(f"unknown figure(s): {', '.join(unknown)}; choose from {', '.join(names)}")
        args.figures = [f for f in names if f in wanted]
    else:
        args.figures = names
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def job_count(figure: str, args: argparse.Namespace) -> int:
    full, quick, takes_jobs = JOB_COUNTS[figure]
    if takes_jobs and args.jobs is not None:
        return args.jobs
    if figure == "promote_100k" and args.promote_jobs:
        return args.promote_jobs
    return quick if args.quick else full


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render_saved(args.render)
    t_start = time.monotonic()

    def _stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)

    ensure_peers_venv(args.with_peers)
    load_before = os.getloadavg()[0]
    plan = cpu_plan(not args.no_pin)
    redis_cpus, client_cpus = plan if plan else (None, None)
    server = RedisServer(cpus=redis_cpus)
    log(f"redis-server {server.version} on 127.0.0.1:{server.port}")
    pinning = (
        f"redis-server on CPU {sorted(redis_cpus)}, clients on CPU {sorted(client_cpus)}"
        if plan
        else "no CPU pinning"
    )
    log(pinning)

    systems = [s for s in SYSTEMS if args.with_peers or not s.peer]
    results: dict[tuple[str, str], dict] = {}
    ceiling = None
    try:
        for figure in args.figures:
            jobs = job_count(figure, args)
            targets = [CEILING] if figure == "ceiling" else systems
            for system in targets:
                log(f"[{system.name}] {figure} (jobs={jobs}) ...")
                res = run_side(system, figure, jobs, server, client_cpus)
                summary = ", ".join(f"{k}={fmt(v)}" for k, v in res.get("metrics", {}).items())
                log(
                    f"    {res['status']} in {res['wall_s']} s {summary} "
                    f"{res.get('error', '')}".rstrip()
                )
                if figure == "ceiling":
                    ceiling = res
                else:
                    results[(system.name, figure)] = res
    finally:
        server.stop()

    rows = build_rows(results, systems, ceiling)
    print_report(rows, results, systems, ceiling)
    total = time.monotonic() - t_start
    print(
        f"total time {total:.0f} s; redis {server.version}; "
        f"python {platform.python_version()}; {os.cpu_count()} CPUs; {pinning}; "
        f"1-min load {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
        "(other work on the machine skews the numbers)"
    )

    if args.json:
        doc = {
            "meta": {
                "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "quick": args.quick,
                "with_peers": args.with_peers,
                "redis_version": server.version,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "pinning": pinning,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                "total_s": round(total, 1),
                "jobs": {f: job_count(f, args) for f in args.figures},
            },
            "rows": rows,
            "results": list(results.values()) + ([ceiling] if ceiling else []),
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, default=str)
            fh.write("\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
