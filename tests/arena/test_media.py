"""Image outputs (by file and by URL) are served by the app under neutral names: the
battle's JSON never holds the file name or the original URL, which here name the model."""

from __future__ import annotations

import functools
import http.server
import json
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
