"""Accounts for the review console: Argon2 password hashes, server-side sessions, login throttling."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pipeline.review.store import Store

SESSION_COOKIE = "livemod_session"
LOGIN_CSRF_COOKIE = "livemod_login_csrf"
SESSION_HOURS = 12

_hasher = PasswordHasher()
# Verifying against this keeps the time of a login for an unknown name like that of a known one.
_DUMMY_HASH = _hasher.hash("livemod-no-such-user")


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("password: at least 8 characters")
    return _hasher.hash(password)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def authenticate(store: Store, name: str, password: str) -> dict | None:
    user = store.user(name)
    try:
        _hasher.verify(user["pw_hash"] if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user["pw_hash"]):
        store.set_pw_hash(name, _hasher.hash(password))
    return user


def start_session(store: Store, name: str) -> tuple[str, str]:
    """A new session: (cookie token, CSRF token).  Only the token's hash is stored."""
    token, csrf = new_token(), new_token()
    expires = datetime.now(timezone.utc) + timedelta(hours=SESSION_HOURS)
    store.add_session(token_hash(token), name, csrf, expires.isoformat(timespec="seconds"))
    return token, csrf


class LoginThrottle:
    """At most ``limit`` failed logins per client address and per user name in ``window`` seconds.

    Kept in memory: the console is one process; a restart forgets, which only helps a real user.
    """

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            waits = [q[0] + self.window - now for k in keys if len(q := self._recent(k, now)) >= self.limit]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)
