"""Every request body the arena reads is capped (:mod:`prefkit.arena.bodies`), against a real
server on 127.0.0.1: the JSON API (battles, votes), the plain HTML vote forms and the admin
routes (outputs, lifting flags) answer 413 with a message that names the limit, from the
``Content-Length`` before reading, and while counting a chunked body (no length declared).

The raw-socket cases send the head and part of an oversize body and never finish it: a
server that read the whole body before deciding (as the JSON API did) would wait for the
rest, and the answer would never come (the read times out and the test fails)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from arena_helpers import api

from prefkit.arena.bodies import (
    MAX_ADMIN_BYTES,
    MAX_BATTLE_BYTES,
    MAX_JSON_BYTES,
    MAX_LIFT_BYTES,
    size_text,
)

#: The routes that read a body: (path, extra headers, the limit, what the fix says).
ADMIN = {"Authorization": "Bearer test-token"}
ROUTES = [
    ("/api/battles", {"X-Voter": "v1", "Content-Type": "application/json"}, MAX_BATTLE_BYTES,
     "a prompt of at most 20,000 characters"),
    ("/api/battles/nosuchbattle/vote", {"X-Voter": "v1", "Content-Type": "application/json"},
     MAX_JSON_BYTES, "a vote is under 1 KiB"),
    ("/vote/battles", {"Content-Type": "application/x-www-form-urlencoded"}, MAX_JSON_BYTES,
     "a vote form is under 1 KiB"),
    ("/vote/battles/nosuchbattle", {"Content-Type": "application/x-www-form-urlencoded"},
     MAX_JSON_BYTES, "a vote form is under 1 KiB"),
    ("/api/admin/outputs", {**ADMIN, "Content-Type": "application/json"}, MAX_ADMIN_BYTES,
     "several requests of at most 16 MiB"),
    ("/api/admin/flags/lift", {**ADMIN, "Content-Type": "application/json"}, MAX_LIFT_BYTES,
     "at most 10,000 ids"),
]
READ_TIMEOUT = 20.0  # seconds for the answer (a server waiting for the rest never answers)


def _raw(port: int, path: str, headers: dict[str, str], first: bytes) -> tuple[int, str]:
    """POST ``path`` on a raw socket: the head, then ``first`` (part of the body), never the
    rest; the status and body of the answer."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as s:
        s.sendall(head.encode() + first)
        data = b""
        while b"\r\n\r\n" not in data:
            got = s.recv(65536)
            assert got, f"{path}: the server closed the connection without an answer"
            data += got
        top, _, body = data.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        n = int(fields["content-length"])
        while len(body) < n:
            got = s.recv(65536)
            assert got, f"{path}: the answer stopped after {len(body)} of {n} bytes"
            body += got
    return int(lines[0].split()[1]), body.decode("utf-8", "replace")


def _says_limit(text: str, limit: int, fix: str) -> None:
    assert f"over {size_text(limit)} ({limit:,} bytes)" in text, text[-600:]
    assert fix in text, text[-600:]


@pytest.mark.parametrize("path,headers,limit,fix", ROUTES,
                         ids=[r[0].replace("/", "_") for r in ROUTES])
def test_oversize_bodies_refused_without_reading_them(sqlite_db, servers, path, headers, limit,
                                                      fix):
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0", "--ip-rate", "0")
    port = s.port
    # a declared length over the cap: refused from the header (100 bytes of 10 MB sent)
    status, text = _raw(port, path, {**headers, "Content-Length": str(limit + 10_000_000)},
                        b"x" * 100)
    assert status == 413, text[-600:]
    _says_limit(text, limit, fix)
    # a declared length of exactly the cap is not refused for its size (400: not JSON etc.)
    r = httpx.post(s.url + path, headers=headers, content=b"x" * limit, timeout=60)
    assert r.status_code != 413, r.text[-600:]
    # chunked, no length declared: one chunk past the cap, the body never finished
    over = limit + 1024
    status, text = _raw(port, path, {**headers, "Transfer-Encoding": "chunked"},
                        f"{over:x}\r\n".encode() + b"x" * over + b"\r\n")
    assert status == 413, text[-600:]
    _says_limit(text, limit, fix)
    # many small chunks add up: refused once their sum passes the cap
    small = 4096
    chunks = b"".join(f"{small:x}\r\n".encode() + b"y" * small + b"\r\n"
                      for _ in range(limit // small + 2))
    status, text = _raw(port, path, {**headers, "Transfer-Encoding": "chunked"}, chunks)
    assert status == 413, text[-600:]


def test_a_client_still_sending_reads_the_413_and_the_server_goes_on(sqlite_db, servers):
    """A whole oversize body sent by an ordinary client (httpx), with a length and chunked:
    the client gets the 413 (the rest is dropped, not reset under it), and the server then
    takes outputs, battles and votes as before."""
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0", "--ip-rate", "0")
    c = api(s, "v1")
    big = json.dumps({"winner": "a", "pad": "x" * (1 << 20)}).encode()
    r = c.post("/api/battles/nope/vote", content=big)
    assert r.status_code == 413
    _says_limit(r.json()["error"], MAX_JSON_BYTES, "a vote is under 1 KiB")

    def chunked():
        for _ in range(64):
            yield b" " * 16384  # 1 MiB of JSON whitespace, no length declared

    r = c.post("/api/battles", content=chunked())
    assert r.status_code == 413 and "over 256 KiB" in r.json()["error"]
    # the same connection and server serve the next requests
    rows = [{"prompt_id": f"p{i}", "prompt": f"Q{i}?", "model": m, "output": f"{m} {i}"}
            for i in range(2) for m in ("alpha", "bravo")]
    added = httpx.post(s.url + "/api/admin/outputs", json=rows, headers=ADMIN, timeout=30)
    assert added.status_code == 200, added.text
    b = c.post("/api/battles", json={"k": 2})
    assert b.status_code == 200, b.text
    v = c.post(f"/api/battles/{b.json()['battle_id']}/vote", json={"winner": "a"})
    assert v.status_code == 200 and v.json()["vote_seq"] == 1, v.text
    # a voter's own prompt as long as the field allows fits the battle's cap however it is
    # escaped (20,000 emoji as JSON escapes: 240,014 bytes): refused for what it is, not its
    # size (no model has an endpoint here)
    body = json.dumps({"prompt": "\U0001F600" * 20_000}).encode()  # ensure_ascii: 12 B each
    assert MAX_JSON_BYTES < len(body) <= MAX_BATTLE_BYTES
    r = c.post("/api/battles", content=body)
    assert r.status_code == 400 and "no model endpoints" in r.json()["error"], r.text[:300]
    # a body that is not UTF-8 is a 400 that says so (it was a 500)
    bad = c.post("/api/battles", content=b"\xff\xfe{")
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]


def test_size_text() -> None:
    assert [size_text(n) for n in (100, 1024, 65536, 640_000, 16 << 20, 1536)] == [
        "100 bytes", "1 KiB", "64 KiB", "625 KiB", "16 MiB", "1.5 KiB"]
