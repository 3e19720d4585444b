"""Image outputs (by file and by URL) are served by the app under neutral names: the
battle's JSON never holds the file name or the original URL, which here name the model."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
import zlib

import httpx
from arena_helpers import api, prefkit


def _png(rgb: tuple[int, int, int]) -> bytes:
    """A 2x2 PNG of one colour (written by hand: no imaging library needed)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + bytes(rgb) * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_media_by_file_and_url_served_under_neutral_names(sqlite_db, servers, tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "painter-one_cat.png").write_bytes(_png((255, 0, 0)))
    web = tmp_path / "web"
    web.mkdir()
    (web / "painter-two_cat.png").write_bytes(_png((0, 0, 255)))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(web))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/painter-two_cat.png"
    rows = [{"prompt_id": "p1", "prompt": "a cat", "model": "painter-one",
             "output": "", "media": "pics/painter-one_cat.png"},
            {"prompt_id": "p1", "prompt": "a cat", "model": "painter-two",
             "output": "", "media": url}]
    (tmp_path / "o.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefkit("arena", "add-outputs", str(tmp_path / "o.jsonl"), "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    c = api(s, "viewer")
    try:
        r = c.post("/api/battles")
        assert "painter" not in r.text and "127.0.0.1" not in r.text and ".png" not in r.text
        b = r.json()
        got = {}
        for o in b["outputs"]:
            assert o["media"] == f"/media/{b['battle_id']}/{o['slot']}"
            assert o["media_type"] == "image"
            m = c.get(o["media"])
            assert m.status_code == 200 and m.headers["content-type"] == "image/png"
            assert "painter" not in json.dumps(dict(m.headers))
            got[o["slot"]] = m.content
        assert sorted(got.values()) == sorted([_png((255, 0, 0)), _png((0, 0, 255))])
        # another voter cannot fetch this battle's media
        assert api(s, "other").get(b["outputs"][0]["media"]).status_code == 404
        res = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "a"}).json()
        shown_a = {m["slot"]: m["model"] for m in res["models"]}["a"]
        assert got["a"] == _png((255, 0, 0) if shown_a == "painter-one" else (0, 0, 255))
    finally:
        httpd.shutdown()
    assert httpx.get(s.url + "/media/nope/a").status_code == 404


def test_media_errors_name_the_row(tmp_path):
    (tmp_path / "o.jsonl").write_text(json.dumps(
        {"prompt_id": "p", "prompt": "q", "model": "m", "output": "", "media": "gone.png"}) + "\n")
    r = prefkit("arena", "add-outputs", str(tmp_path / "o.jsonl"), "--db",
                str(tmp_path / "a.db"), check=False)
    assert r.returncode == 2
    assert "no such media file" in r.stderr and "line 1" in r.stderr and "'media'" in r.stderr


class _Counting(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and counts the GETs (how often the arena fetched a URL)."""

    gets = 0

    def do_GET(self):
        type(self).gets += 1
        super().do_GET()

    def log_message(self, *args):
        pass


def _serve(folder) -> tuple[http.server.ThreadingHTTPServer, type]:
    handler = type("Handler", (_Counting,), {"gets": 0})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, handler


def _web_outputs(tmp_path, db: str, prompt_id: str,
                 files: dict[str, tuple[str, bytes]]) -> tuple[http.server.HTTPServer, type]:
    """Media outputs by URL (``model -> (file name, bytes)``), served by a real counting
    HTTP server on 127.0.0.1, added to the arena at ``db``."""
    web = tmp_path / f"web-{prompt_id}"
    web.mkdir()
    for name, data in files.values():
        (web / name).write_bytes(data)
    httpd, handler = _serve(web)
    port = httpd.server_address[1]
    rows = [{"prompt_id": prompt_id, "prompt": "q", "model": m, "output": "",
             "media": f"http://127.0.0.1:{port}/{name}"} for m, (name, _) in files.items()]
    out = tmp_path / f"{prompt_id}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefkit("arena", "add-outputs", str(out), "--db", db)
    return httpd, handler


def test_media_cached_with_etag_and_fetched_once(sqlite_db, servers, tmp_path):
    """``Cache-Control: private, no-cache`` and a strong ETag (a hash of the bytes);
    ``If-None-Match`` gives 304 without the bytes; the URL is fetched from its origin once
    for many battles and requests."""
    import hashlib

    httpd, handler = _web_outputs(tmp_path, sqlite_db, "p1", {
        "m-one": ("one.png", _png((10, 20, 30))), "m-two": ("two.png", _png((40, 50, 60)))})
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0")
    c = api(s, "viewer")
    try:
        for _ in range(5):
            b = c.post("/api/battles").json()
            for o in b["outputs"]:
                m = c.get(o["media"])
                assert m.status_code == 200
                assert m.headers["cache-control"] == "private, no-cache"
                etag = m.headers["etag"]
                assert etag == '"' + hashlib.sha256(m.content).hexdigest()[:32] + '"'
                again = c.get(o["media"], headers={"If-None-Match": etag})
                assert again.status_code == 304 and again.content == b""
                assert again.headers["etag"] == etag
                assert c.get(o["media"], headers={"If-None-Match": '"other"'}
                             ).status_code == 200
        assert handler.gets == 2  # each URL once, for 5 battles x 3 requests each
    finally:
        httpd.shutdown()


def test_media_size_cap(sqlite_db, servers, tmp_path):
    """add-outputs refuses a file over --max-media-mb naming file, line, field and cap; the
    server refuses a URL answer over its cap (502, the cap named) and keeps serving."""
    big = tmp_path / "big.png"
    big.write_bytes(_png((1, 2, 3)) + b"\0" * 5000)
    (tmp_path / "o.jsonl").write_text(
        json.dumps({"prompt_id": "p", "prompt": "q", "model": "m", "output": "",
                    "media": "big.png"}) + "\n")
    r = prefkit("arena", "add-outputs", str(tmp_path / "o.jsonl"), "--db", sqlite_db,
                "--max-media-mb", "0.001", check=False)
    assert r.returncode == 2
    said = " ".join(r.stderr.split())
    assert f"{tmp_path / 'o.jsonl'} line 1" in said and "'media'" in said
    assert f"media file {big} is {big.stat().st_size:,} bytes, over the cap of 1,048 bytes" \
        in said
    assert "raise the cap (--max-media-mb)" in said
    assert not os.path.exists(sqlite_db)  # a refused file writes nothing
    ok = prefkit("arena", "add-outputs", str(tmp_path / "o.jsonl"), "--db", sqlite_db,
                 "--max-media-mb", "1")
    said = " ".join((ok.stdout + ok.stderr).split())
    assert "added or updated 1 output of 1 model on 1 prompt to" in said  # was '1 outputs'

    # served with a smaller cap than the file (a URL is only measured when fetched)
    httpd, _ = _web_outputs(tmp_path, sqlite_db, "u", {
        "m": ("huge.png", big.read_bytes()), "n": ("small.png", _png((9, 9, 9)))})
    s = servers(sqlite_db, "--rounds", "20", "--voter-rate", "0", "--max-media-mb", "0.001")
    c = api(s, "viewer")
    try:
        b = c.post("/api/battles").json()  # prompt u: the only one two models share
        got = {c.get(o["media"]).status_code: c.get(o["media"]) for o in b["outputs"]}
        assert sorted(got) == [200, 502]
        assert got[502].json()["error"] == (
            f"the media is {big.stat().st_size:,} bytes, over this arena's cap of 1,048 bytes "
            "(prefkit arena serve --max-media-mb)")
        assert got[200].content == _png((9, 9, 9))
    finally:
        httpd.shutdown()


def test_media_file_replaced_after_it_was_shown_is_shown_anew(sqlite_db, servers, tmp_path):
    """A battle's file replaced by other bytes of the same size and modification time (as
    ``cp -p`` leaves it): the browser's revalidation (``If-None-Match`` with the old ETag)
    gets the new bytes and their ETag, and ``no-cache`` makes a browser revalidate before
    each use. Was: ``immutable`` for a year (browsers never asked again) and the server's
    cache kept by size and modification time (it answered 304)."""
    import hashlib

    pic = tmp_path / "cat.png"
    pic.write_bytes(_png((1, 2, 3)))
    (tmp_path / "o.jsonl").write_text("".join(json.dumps(
        {"prompt_id": "p", "prompt": "a cat", "model": m, "output": "", "media": "cat.png"})
        + "\n" for m in ("m-one", "m-two")))
    prefkit("arena", "add-outputs", str(tmp_path / "o.jsonl"), "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "20")
    c = api(s, "viewer")
    b = c.post("/api/battles").json()
    url = b["outputs"][0]["media"]
    first = c.get(url)
    assert first.status_code == 200 and first.content == _png((1, 2, 3))
    assert first.headers["cache-control"] == "private, no-cache"
    old = first.headers["etag"]
    assert c.get(url, headers={"If-None-Match": old}).status_code == 304
    st = pic.stat()
    new = _png((200, 100, 50))
    assert len(new) == st.st_size  # the same size: only the bytes differ
    pic.write_bytes(new)
    os.utime(pic, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same modification time
    again = c.get(url, headers={"If-None-Match": old})
    assert again.status_code == 200 and again.content == new
    assert again.headers["etag"] == '"' + hashlib.sha256(new).hexdigest()[:32] + '"' != old
