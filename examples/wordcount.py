"""Count the words of every text file in a folder: one job per file, then a summary job.

Run it from the repository's root folder::

    python -m examples.wordcount FOLDER

It queues one ``count_words`` job per file (in one round trip, with ``map``), runs a burst
worker with two child processes until they are done, then queues a ``summarize`` job that
reads their results from Redis, and prints the summary. With nothing configured, an embedded
Redis server is started in ``.tasks_rq/`` (``tasks-rq server stop`` stops it); set
``TASKS_RQ_URL`` to use your own server.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from pathlib import Path

from tasks_rq import Job, Worker, task

QUEUE = "wordcount"
WORD = re.compile(r"[A-Za-z][A-Za-z']+")
MAX_FILE_BYTES = 5_000_000


@task(queue=QUEUE, timeout=60)
def count_words(path: str) -> dict[str, int]:
    """Return how often each word occurs in the file at ``path`` (lower-cased)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return dict(Counter(word.lower() for word in WORD.findall(text)))


@task(queue=QUEUE)
def summarize(job_ids: list[str], top: int = 10) -> dict[str, object]:
    """Merge the counts of finished ``count_words`` jobs; return totals and top words."""
    total: Counter[str] = Counter()
    for job_id in job_ids:
        counts = Job.fetch(job_id, QUEUE).return_value
        total.update(counts or {})
    return {
        "files": len(job_ids),
        "words": sum(total.values()),
        "distinct": len(total),
        "top": total.most_common(top),
    }


def text_files(folder: Path) -> list[Path]:
    """Return the readable text files below ``folder``, skipping hidden and huge ones."""
    found = []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden and path.stat().st_size <= MAX_FILE_BYTES:
            found.append(path)
    return found


def main(folder: Path) -> int:
    """Queue the jobs, run a worker until they are done, print what happened."""
    files = text_files(folder)
    if not files:
        print(f"no files found in {folder}", file=sys.stderr)
        return 1

    count_jobs = count_words.map([str(path) for path in files])
    print(f"queued {len(count_jobs)} count_words jobs (queue {QUEUE!r})")
    Worker([QUEUE], concurrency=2).work(burst=True)

    for path, job in zip(files, count_jobs, strict=True):
        counts = job.result(timeout=30)
        print(f"  {sum(counts.values()):>7} words  {path.relative_to(folder)}")

    summary_job = summarize.delay([job.id for job in count_jobs])
    Worker([QUEUE]).work(burst=True)
    summary = summary_job.result(timeout=30)
    print(
        f"\n{summary['words']} words ({summary['distinct']} distinct) in "
        f"{summary['files']} files; most common:"
    )
    for word, count in summary["top"]:  # type: ignore[attr-defined]
        print(f"  {count:>7}  {word}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python -m examples.wordcount FOLDER", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]).resolve()))
