"""Who may do what: voter identity, CSRF, the admin token, rate limits and daily caps.

- **Voter**: the ``X-Voter`` header (scripts) or the ``prefkit_voter`` cookie (browsers; set
  on first visit).
- **CSRF**: a state-changing request identified by cookie must carry the ``X-CSRF-Token``
  header (or, in a form, a ``csrf`` field) equal to the ``prefkit_csrf`` cookie, or come
  with an ``Origin`` equal to the app's own. A request that sends ``X-Voter`` passes: a
  browser cannot add that header to a cross-site request without a CORS preflight, which
  the app never grants.
- **Admin**: ``Authorization: Bearer TOKEN`` (or ``X-Admin-Token``), compared in constant
  time with the token from ``PREFKIT_ARENA_TOKEN`` (or the one printed once at start-up).
- **Rate limits**: token buckets per voter and per client address (battles and votes),
  and a daily cap of votes per voter (UTC days).
- **Client address**: the socket's peer; ``X-Forwarded-For`` is read only when the peer is
  one of the configured trusted proxies (then the right-most address not itself trusted).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

__all__ = ["Buckets", "DailyCap", "client_address", "csrf_ok", "new_token", "token_ok"]

VOTER_COOKIE = "prefkit_voter"
CSRF_COOKIE = "prefkit_csrf"


def new_token(n: int = 18) -> str:
    return secrets.token_urlsafe(n)


def token_ok(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def csrf_ok(headers: dict[str, str], cookies: dict[str, str], own_origin: str,
            form_token: str | None = None) -> bool:
    """Whether a state-changing request passes the CSRF check (module docstring)."""
    if headers.get("x-voter"):
        return True
    cookie = cookies.get(CSRF_COOKIE)
    given = headers.get("x-csrf-token") or form_token
    if cookie and given and hmac.compare_digest(cookie.encode(), given.encode()):
        return True
    origin = headers.get("origin")
    return bool(origin) and origin == own_origin


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: tuple[str, ...]) -> str:
    """The client's address: the peer, or through trusted proxies ``X-Forwarded-For``'s
    right-most untrusted entry."""
    peer = peer or "unknown"
    if not forwarded_for or peer not in trusted:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if hop not in trusted:
            return hop
    return peer


@dataclass
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """Token buckets keyed by voter or address: ``rate`` per second, ``burst`` at most."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._b: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0 if allowed, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            b = self._b.get(key)
            if b is None:
                if len(self._b) >= self.max_keys:
                    self._b.clear()
                b = self._b[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / self.rate


class DailyCap:
    """Votes per voter per UTC day, counted from the store once, then in memory."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._n: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def day(now: float | None = None) -> int:
        return int((time.time() if now is None else now) // 86400)

    def known(self, voter_id: int) -> bool:
        return (voter_id, self.day()) in self._n

    def seed(self, voter_id: int, n: int) -> None:
        with self._lock:
            self._n.setdefault((voter_id, self.day()), n)

    def take(self, voter_id: int) -> bool:
        """Count one vote; False (and nothing counted) once the cap is reached."""
        if self.cap <= 0:
            return True
        key = (voter_id, self.day())
        with self._lock:
            n = self._n.get(key, 0)
            if n >= self.cap:
                return False
            self._n[key] = n + 1
            return True

    def give_back(self, voter_id: int) -> None:
        with self._lock:
            key = (voter_id, self.day())
            self._n[key] = max(0, self._n.get(key, 1) - 1)
