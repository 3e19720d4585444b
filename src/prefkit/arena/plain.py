"""Voting without JavaScript: plain HTML forms, rendered on the server.

- ``GET /vote``: a form that starts a battle (``POST /vote/battles``, fields ``csrf`` and
  ``k``), which answers ``303 See Other`` to the battle's page.
- ``GET /vote/battles/{battle_id}``: the prompt and the anonymous outputs with a form that
  posts the vote to the same address (``winner=a|b|tie|both_bad``, or ``rank_a=1&rank_b=2
  ...`` for K outputs: 1 is best, equal numbers tie); the answer is the same page with the
  models revealed. A battle that has a vote shows its models, and only then.

The guards are the JSON API's (:mod:`prefkit.arena.voting`): the voter cookie identifies
the voter, the form's hidden ``csrf`` field must equal the ``prefkit_csrf`` cookie (both set
by ``GET /vote`` or the battle page), rate limits, the daily cap, one vote per battle, a
battle only for its voter, no model name in any page before the vote.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from prefkit.arena import guard, pages
from prefkit.arena.app import Arena, Refusal, _with_cookies
from prefkit.arena.bodies import MAX_JSON_BYTES, read_body
from prefkit.arena.content import media_kind
from prefkit.arena.voting import cast_vote, start_battle

__all__ = ["battle_page", "create_battle", "start_page"]

_FIX = "reload the page (it carries a fresh form token) and send the form again"
_WINNERS = (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"),
            ("both_bad", "Both are bad"))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    head = pages._HEAD.format(title=escape(title)).replace('<a href="/">Vote</a>',
                                                           '<a href="/vote">Vote</a>')
    return HTMLResponse(f"{head}\n<h1>{escape(title)}</h1>\n{body}\n</body></html>",
                        status_code=status, headers={"Cache-Control": "no-store"})


def _csrf(request: Request) -> str:
    return request.cookies.get(guard.CSRF_COOKIE) or guard.new_token()


def _start_form(csrf: str, max_k: int, label: str = "Start a battle") -> str:
    ks = "".join(f'<option value="{k}">{k}</option>' for k in range(2, max_k + 1))
    return (f'<form method="post" action="/vote/battles"><input type="hidden" name="csrf" '
            f'value="{escape(csrf)}"><label>Answers to compare: <select name="k">{ks}</select>'
            f'</label> <button type="submit" id="start">{escape(label)}</button></form>')


def _refusal(request: Request, r: Refusal, voter: str, new: bool) -> Response:
    arena: Arena = request.app.state.arena
    body = (f'<p id="error">{escape(r.message)}</p>'
            + _start_form(_csrf(request), arena.config.max_k, "Start another battle"))
    resp = _page("Arena: not done", body, r.status)
    resp.headers.update(r.headers)
    return _with_cookies(resp, request, voter, new)


MAX_FORM_BYTES = MAX_JSON_BYTES  # a vote form is under 1 KiB


async def _form(request: Request) -> dict[str, str] | Refusal:
    """The fields of a urlencoded form (the last value of each), or a refusal of a body
    over :data:`MAX_FORM_BYTES` (read no further than that: :mod:`prefkit.arena.bodies`)."""
    raw = await read_body(request, MAX_FORM_BYTES, f"a vote form is under 1 KiB: {_FIX}")
    if isinstance(raw, Refusal):
        return raw
    return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"),
                                          keep_blank_values=True).items()}


async def start_page(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    csrf = _csrf(request)
    body = ("<p>Anonymous models answered the same prompt. Vote for the better answer; then "
            "you see which models they were. (This page works without JavaScript.)</p>"
            + _start_form(csrf, arena.config.max_k))
    return _with_cookies(_page("Arena: vote", body), request, voter, new, csrf)


async def create_battle(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    form = await _form(request)
    voter, new = arena.voter(request)
    if isinstance(form, Refusal):
        return _refusal(request, form, voter, new)
    who = arena.who(request, form.get("csrf"), _FIX)
    if isinstance(who, Refusal):
        return _refusal(request, who, voter, new)
    k: Any = form.get("k", "2")
    k = int(k) if _digits(k) else k
    battle = await start_battle(arena, voter, arena.address(request), k)
    if isinstance(battle, Refusal):
        return _refusal(request, battle, voter, new)
    return _with_cookies(RedirectResponse(f"/vote/battles/{battle['battle_id']}", 303),
                         request, voter, new)


def _digits(v: str) -> bool:
    """ASCII digits only (``str.isdigit`` is true of '²' and '٣', which ``int`` refuses or
    reads; a form field so typed is refused as the JSON API refuses it)."""
    return v.isascii() and v.isdigit() and len(v) <= 6


def _ranking(form: dict[str, str], slots: list[str]) -> dict[str, Any] | Refusal:
    """The JSON API's vote body from the form's fields, or a refusal naming the form's own
    field (``rank_c``, not the API's 'ranking') when a rank is missing or not one of the
    form's choices 1..K."""
    if "winner" in form:
        return {"winner": form["winner"]}
    given = {s: form.get(f"rank_{s}", "") for s in slots}
    for s, v in given.items():
        if not (_digits(v) and 1 <= int(v) <= len(slots)):
            return Refusal(400, f"field 'rank_{s}' must be a whole number from 1 to "
                                f"{len(slots)} (1 = best, the same number for a tie), got "
                                f"{v!r}; choose a rank for every answer and send the form "
                                "again")
    levels: dict[int, list[str]] = {}
    for s, v in given.items():
        levels.setdefault(int(v), []).append(s)
    return {"ranking": [lv[0] if len(lv) == 1 else lv for _, lv in sorted(levels.items())]}


async def battle_page(request: Request) -> Response:
    """``GET``: the battle (revealed once voted); ``POST``: the vote, then the same page."""
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    battle_id = request.path_params["battle_id"]
    result = None
    if request.method == "POST":
        form = await _form(request)
        if isinstance(form, Refusal):
            return _refusal(request, form, voter, new)
        who = arena.who(request, form.get("csrf"), _FIX)
        if isinstance(who, Refusal):
            return _refusal(request, who, voter, new)
        b = await arena.battle(battle_id)
        slots = sorted(b["slots"]) if b else []
        body = (_ranking(form, slots) if b and b["voter"] == voter and b["vote"] is None
                else {})  # cast_vote answers the rest (no battle, not yours, voted)
        if isinstance(body, Refusal):
            return _refusal(request, body, voter, new)
        result = await cast_vote(arena, voter, arena.address(request), battle_id, body)
        if isinstance(result, Refusal):
            return _refusal(request, result, voter, new)
    b = await arena.battle(battle_id)
    if b is None or b["voter"] != voter:  # another voter's battle is no one else's to see
        return _refusal(request, Refusal(404, f"no battle {battle_id!r} of yours"), voter, new)
    csrf = _csrf(request)
    return _with_cookies(_page("Arena: which answer is better?",
                               _battle_body(battle_id, b, csrf, arena.config.max_k, result)),
                         request, voter, new, csrf)


def _battle_body(battle_id: str, b: dict[str, Any], csrf: str, max_k: int,
                 result: dict[str, Any] | None) -> str:
    slots = sorted(b["slots"])
    voted = b["vote"] is not None
    parts = [f'<div class="prompt" id="prompt">{escape(b["prompt"])}</div><div class="sides">']
    for s in slots:
        model, _, location = b["slots"][s]
        media = ""
        if location:
            tag = {"audio": "audio", "video": "video"}.get(media_kind(location) or "", "img")
            src = f"/media/{battle_id}/{s}"
            media = (f'<img src="{src}" alt="output {s.upper()}">' if tag == "img" else
                     f'<{tag} src="{src}" controls></{tag}>')
        reveal = f"Model {s.upper()}: {escape(model)}" if voted else ""
        parts.append(f'<div class="side"><h2>{s.upper()}</h2><div class="media">{media}</div>'
                     f'<pre id="out-{s}">{escape(b["shown"][s])}</pre>'
                     f'<div class="reveal" id="reveal-{s}">{reveal}</div></div>')
    parts.append("</div>")
    token = f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
    if not voted:
        if len(slots) == 2:
            buttons = "".join(f'<button type="submit" name="winner" value="{w}">{label}</button>'
                              for w, label in _WINNERS)
        else:
            opts = "".join(f'<option value="{r}">{r}</option>' for r in range(1, len(slots) + 1))
            buttons = ("<p>Rank the answers (1 = best; the same rank for a tie):</p>"
                       + "".join(f'<label>{s.upper()}: <select name="rank_{s}">{opts}</select>'
                                 "</label> " for s in slots)
                       + '<button type="submit">Submit ranking</button>')
        parts.append(f'<form method="post" action="/vote/battles/{battle_id}" id="vote">'
                     f"{token}{buttons}</form>")
    else:
        said = "Vote recorded."
        if result and result["duplicate"]:
            said = "This battle already had your vote; it counts once."
        elif result and result["flags"]:
            said += f" (set aside: {', '.join(result['flags'])})"
        parts.append(f'<p id="result">{escape(said)}</p>'
                     + _start_form(csrf, max_k, "Next battle"))
    return "".join(parts)
