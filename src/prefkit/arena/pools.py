"""PostgreSQL connection pools of the arena's store (no SQL here: :mod:`prefkit.arena.store`
owns the statements and lends them a connection).

- :class:`ThreadPool`: for calls from any thread (the worker threads of the request
  handlers, the live board's thread): an idle connection, a new one while fewer than
  ``size`` are open, else the next one given back (waiting).
- :class:`LoopPool`: for the event loop itself (``psycopg.AsyncConnection``): a statement
  without a thread hop; single-threaded, so it needs no lock.

A connection found closed or broken (the server restarted) is replaced. Connections are
opened on demand and :meth:`warm` opens some before the first request (a PostgreSQL backend
takes milliseconds to start, which the first requests would otherwise wait for).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["LoopPool", "ThreadPool"]


class ThreadPool:
    """Up to ``size`` autocommit connections (the store opens transactions itself)."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, max(1, size)
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._open: list[Any] = []

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def _borrow(self) -> Any:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = len(self._open) < self.size
                if grow:
                    self._open.append(None)  # the place is taken while connecting
            if not grow:
                conn = self._idle.get()
            else:
                try:
                    conn = self._connect()
                finally:
                    with self._lock:
                        self._open.remove(None)
                with self._lock:
                    self._open.append(conn)
        if conn.closed or conn.broken:
            fresh = self._connect()
            with self._lock:
                self._open.remove(conn)
                self._open.append(fresh)
            conn = fresh
        return conn

    @contextmanager
    def conn(self) -> Iterator[Any]:
        """A connection for the duration of the block."""
        conn = self._borrow()
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def warm(self, n: int) -> None:
        with self._lock:
            missing = min(n, self.size) - len(self._open)
        for conn in [self._borrow() for _ in range(max(0, missing))]:
            self._idle.put(conn)

    def close(self) -> None:
        with self._lock:
            for c in self._open:
                if c is not None:
                    c.close()
            self._open.clear()


class LoopPool:
    """Up to ``size`` asynchronous autocommit connections, used from one event loop."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size = url, max(1, size)
        self._idle: Any = None  # an asyncio.LifoQueue, made in the loop
        self._open: list[Any] = []

    async def _borrow(self) -> Any:
        import asyncio

        import psycopg

        if self._idle is None:
            self._idle = asyncio.LifoQueue()
        while True:
            try:
                conn = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                if len(self._open) >= self.size:
                    conn = await self._idle.get()
                else:
                    self._open.append(None)
                    try:
                        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                    finally:
                        self._open.remove(None)
                    self._open.append(conn)
                    return conn
            if not (conn.closed or conn.broken):
                return conn
            self._open.remove(conn)  # replaced by the next round

    async def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        """One statement (``%s`` placeholders) in its own implicit transaction; its first
        row."""
        conn = await self._borrow()
        try:
            cur = await conn.execute(sql, params or None)
            return await cur.fetchone()
        finally:
            self._idle.put_nowait(conn)

    async def warm(self, n: int) -> None:
        conns = [await self._borrow() for _ in range(min(n, self.size))]
        for conn in conns:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._open:
            if conn is not None:
                await conn.close()
        self._open.clear()
