"""Push records (violations, gaps) to an HTTP endpoint without ever holding up the pipeline.

:meth:`WebhookSink.send` only queues; one background thread POSTs each record as JSON (UTF-8,
Chinese kept readable), retries connection errors, timeouts, 408, 429 and 5xx answers with
exponential backoff (honouring ``Retry-After``), and after the last retry appends the record
and the error to a dead-letter JSONL file.  A record is never dropped silently: one that finds
the queue full goes to the dead-letter file at once, and every loss is counted in ``stats``.

Each request carries, besides ``Content-Type: application/json``:

* ``X-Livemod-Timestamp``: Unix seconds when the request was sent (each retry re-signs);
* ``X-Livemod-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the shared secret, of
  ``"<timestamp>.<body>"`` (the timestamp header's text, a dot, then the raw body bytes);
* ``X-Livemod-Delivery``: an id that stays the same across retries of one record, so the
  receiver can drop the duplicate it gets when its answer to an earlier try was lost.

A receiver verifies a request by recomputing the HMAC over the raw body as received (before
any JSON parsing), comparing in constant time, and rejecting timestamps more than a few
minutes from its own clock (replays): :func:`verify_signature` does exactly that.  Without a
secret, requests are sent unsigned.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 425, 429}  # and every 5xx


@dataclasses.dataclass(frozen=True)
class WebhookStats:
    """What happened to the records given to a sink so far."""

    sent: int = 0  # accepted by the endpoint (2xx)
    retried: int = 0  # attempts after a failed one
    failed: int = 0  # given up after retries, refused (4xx), or unsent at close: dead-lettered
    dropped: int = 0  # the queue was full: dead-lettered without an attempt
    pending: int = 0  # queued or in flight

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sign(secret: str | bytes, timestamp: str | int, body: bytes | str) -> str:
    """The ``X-Livemod-Signature`` value for a body sent at ``timestamp``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    raw = body.encode("utf-8") if isinstance(body, str) else body
    mac = hmac.new(key, str(timestamp).encode("ascii") + b"." + raw, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int | None,
    body: bytes | str,
    header: str | None,
    tolerance: float | None = 300,
    *,
    now: float | None = None,
) -> bool:
    """Whether a request really comes from a sink holding ``secret`` and is recent.

    ``timestamp`` and ``header`` are the ``X-Livemod-Timestamp`` and ``X-Livemod-Signature``
    headers, ``body`` the raw request body; ``tolerance`` is the largest accepted distance in
    seconds between the timestamp and ``now`` (None: no check).
    """
    if timestamp is None or not header:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if tolerance is not None and abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, str(timestamp).strip(), body), header.strip())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would turn a redirected POST into a bodiless GET; treat a redirect as an error."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _describe(exc: BaseException) -> str:
    """A one-line account of a failed attempt."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(exc, str):  # pragma: no cover - urllib sometimes carries a bare string
            return exc
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class WebhookSink:
    """Deliver JSON records to ``url`` in the background (see the module docstring).

    ``retries``: attempts after the first.  The n-th retry waits ``backoff * backoff_factor**n``
    seconds, or what ``Retry-After`` asks, at most ``max_backoff``.  ``dead_letter``: JSONL file
    of the records that could not be delivered (without it they are logged as errors).
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes | None,
        *,
        max_queue: int = 1000,
        timeout: float = 5.0,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_factor: float = 2.0,
        max_backoff: float = 60.0,
        dead_letter: Path | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, not {url!r}")
        if max_queue < 1 or retries < 0 or timeout <= 0:
            raise ValueError("max_queue must be ≥ 1, retries ≥ 0 and timeout > 0")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_factor = backoff_factor
        self.max_backoff = max_backoff
        self.dead_letter = Path(dead_letter) if dead_letter is not None else None
        self.headers = dict(headers or {})
        self._queue: queue.Queue[tuple[dict, bytes, str]] = queue.Queue(maxsize=max_queue)
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._counts = {"sent": 0, "retried": 0, "failed": 0, "dropped": 0}
        self._in_flight = 0
        self._lock = threading.Lock()  # counts and the dead-letter file
        self._closing = threading.Event()  # no new records; leave once the queue is empty
        self._abort = threading.Event()  # close() ran out of time: stop waiting, stop sending
        self._thread = threading.Thread(target=self._work, daemon=True, name="webhook")
        self._thread.start()

    # -- the caller's side --

    def send(self, record: dict) -> bool:
        """Queue ``record`` for delivery and return at once: True if queued, False if it went
        straight to the dead-letter file (queue full, or the sink is closed)."""
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if self._closing.is_set():
            self._dead(record, "sink closed before the record was sent", 0, "dropped")
            return False
        try:
            self._queue.put_nowait((record, body, uuid.uuid4().hex))
        except queue.Full:
            self._dead(record, f"queue full ({self._queue.maxsize} records waiting)", 0, "dropped")
            return False
        return True

    @property
    def stats(self) -> WebhookStats:
        with self._lock:
            return WebhookStats(**self._counts, pending=self._queue.qsize() + self._in_flight)

    def close(self, timeout: float = 10.0) -> WebhookStats:
        """Deliver what is queued within ``timeout`` seconds, then stop; records still unsent are
        dead-lettered.  May overrun by one request's ``timeout`` when a request is in flight."""
        self._closing.set()
        self._thread.join(timeout=max(0.0, timeout))
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(timeout=self.timeout + 1.0)
        while True:
            try:
                record, _, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            self._dead(record, f"not sent within close timeout ({timeout:g} s)", 0, "failed")
        return self.stats

    def __enter__(self) -> WebhookSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker's side --

    def _work(self) -> None:
        while not self._abort.is_set():
            try:
                record, body, delivery = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            with self._lock:
                self._in_flight = 1
            try:
                self._deliver(record, body, delivery)
            except Exception as exc:  # a bug here must not kill the thread and strand the queue
                log.exception("webhook delivery crashed")
                self._dead(record, f"internal error: {_describe(exc)}", 1, "failed")
            finally:
                with self._lock:
                    self._in_flight = 0

    def _deliver(self, record: dict, body: bytes, delivery: str) -> None:
        error = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retried")
            attempts += 1
            wait: float | None = None
            try:
                self._post(body, delivery)
            except urllib.error.HTTPError as exc:
                error = _describe(exc)
                retryable = exc.code >= 500 or exc.code in _RETRY_STATUS
                wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                exc.close()
                if not retryable:
                    break
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                error = _describe(exc)
            else:
                self._count("sent")
                return
            if attempt == self.retries:
                break
            delay = self.backoff * self.backoff_factor**attempt if wait is None else wait
            delay = min(self.max_backoff, max(0.0, delay))
            log.debug("webhook attempt %d failed (%s); retrying in %.2f s", attempts, error, delay)
            if self._abort.wait(delay):
                error += "; sink closed before the next retry"
                break
        self._dead(record, error, attempts, "failed")

    def _post(self, body: bytes, delivery: str) -> None:
        timestamp = str(int(time.time()))
        headers = {
            **self.headers,
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "livemod-webhook/1",
            "X-Livemod-Timestamp": timestamp,
            "X-Livemod-Delivery": delivery,
        }
        if self.secret is not None:
            headers["X-Livemod-Signature"] = sign(self.secret, timestamp, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with self._opener.open(request, timeout=self.timeout) as response:
            response.read(65536)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _dead(self, record: dict, error: str, attempts: int, counter: str) -> None:
        """Count a record that will not be delivered and keep it in the dead-letter file."""
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "url": self.url,
            "error": error,
            "attempts": attempts,
            "record": record,
        }
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._counts[counter] += 1
            if self.dead_letter is not None:
                try:
                    self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
                    with open(self.dead_letter, "a", encoding="utf-8") as f:
                        f.write(line)
                    return
                except OSError as exc:
                    log.error("cannot write dead-letter file %s: %s", self.dead_letter, exc)
        log.error("webhook record not delivered (%s): %s", error, line.strip())
