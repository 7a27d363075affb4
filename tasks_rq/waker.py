"""A thread that turns pub/sub wake-ups of some queues into bytes on a pipe.

Enqueues publish on a queue's wake channel when it goes from empty to non-empty (and the
scheduler when an earlier job is scheduled). A loop that waits on the pipe's read end, along
with its other file descriptors, so wakes up at once instead of polling Redis.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence

import redis

from tasks_rq import keys

logger = logging.getLogger(__name__)

LISTEN_SLICE_S = 0.25
READY_TIMEOUT_S = 2.0
BACKOFF_CAP_S = 5.0


class Waker(threading.Thread):
    """Write a byte to ``pipe_fd`` for every message on the wake channels of ``queues``."""

    def __init__(self, client: redis.Redis, queues: Sequence[str], pipe_fd: int) -> None:
        super().__init__(name="tasks-rq-waker", daemon=True)
        self._client = client
        self._channels = [keys.wake_channel(name) for name in queues]
        self._pipe_fd = pipe_fd
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self.last_message = ""

    def start(self) -> None:
        """Start listening; return once subscribed (or after a short timeout)."""
        super().start()
        self._ready.wait(READY_TIMEOUT_S)

    def stop(self) -> bool:
        """Stop listening; return whether the thread ended (so its pipe may be closed)."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=2 * LISTEN_SLICE_S + 1)
        return not self.is_alive()

    def run(self) -> None:
        """Listen until stopped, resubscribing after connection errors."""
        failures = 0
        while not self._stopping.is_set():
            try:
                self._listen()
                failures = 0
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                failures += 1
                if failures == 1:
                    logger.debug("waker: pub/sub connection lost (%s); resubscribing", exc)
                self._poke()
                self._stopping.wait(min(BACKOFF_CAP_S, 0.05 * 2**failures))

    def _listen(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(*self._channels)
            pubsub.get_message(timeout=0)
            self._ready.set()
            self._poke()
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=LISTEN_SLICE_S)
                if message is not None:
                    self.last_message = str(message.get("data"))
                    self._poke()
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _poke(self) -> None:
        if self._stopping.is_set():
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._pipe_fd, b"w")


def wait_for_message(pubsub: redis.client.PubSub, timeout_s: float) -> str | None:
    """Wait up to ``timeout_s`` for one message on ``pubsub``; return its data or ``None``."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        message = pubsub.get_message(timeout=max(0.0, remaining))
        if message is not None:
            return str(message.get("data"))
        if remaining <= 0:
            return None
