"""What a voter does, shared by the JSON API (:mod:`prefkit.arena.api`) and the plain HTML
forms (:mod:`prefkit.arena.plain`): start a battle and vote on it.

Both paths run the same guards here, after the caller has identified the voter and passed
the CSRF check (:meth:`prefkit.arena.app.Arena.who`): the rate limits per voter and per
address, the daily cap, one vote per battle (the store's ``UNIQUE(battle_id)``; voting
again answers with the first vote), only the battle's voter may vote on it, and nothing
names a model before the vote (a battle's public side is its random id, the prompt and
the outputs in shuffled slots; media under ``/media/<battle>/<slot>``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from prefkit.arena import guard
from prefkit.arena.app import Arena, Refusal
from prefkit.arena.content import media_kind
from prefkit.runs import plural

__all__ = ["cast_vote", "parse_vote", "start_battle"]


async def start_battle(arena: Arena, voter: str, ip: str, k: Any = 2,
                       prompt: Any = None) -> dict[str, Any] | Refusal:
    """A new battle of ``k`` anonymous outputs for ``voter`` (on the voter's own
    ``prompt`` if given): stored before it is shown; returns its public side
    ``{"battle_id", "prompt", "outputs": [{"slot", "output"[, "media", "media_type"]}]}``."""
    if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= arena.config.max_k:
        return Refusal(400, f"field 'k' must be an integer from 2 to {arena.config.max_k}, "
                            f"got {k!r}")
    limited = arena.limited(voter, ip)
    if limited:
        return limited
    if prompt is not None:
        pick = await _generated(arena, prompt, k)
        if isinstance(pick, Refusal):
            return pick
    else:
        pick = arena.match.next_battle(k)
    if pick is None:
        return Refusal(503, f"no battle possible: fewer than {k} models have outputs for a "
                            "shared prompt; add outputs (prefkit arena add-outputs)")
    prompt_id, slots = pick
    battle_id = guard.new_token(16)
    vid = await arena.voter_id(voter, ip)
    created = await arena.store.acreate_battle(battle_id, vid, prompt_id,
                                               [(s, oid) for s, _, oid in slots])
    shown = {s: arena.outputs[oid] for s, _, oid in slots}
    first = shown[min(shown)]
    arena.remember(battle_id, {"created_at": created, "voter": voter, "prompt_key": first[2],
                               "prompt": first[3], "vote": None,
                               "slots": {s: (o[0], o[1], o[5]) for s, o in shown.items()},
                               "shown": {s: o[4] for s, o in shown.items()}})
    outputs = []
    for s in sorted(shown):
        out: dict[str, Any] = {"slot": s, "output": shown[s][4]}
        if shown[s][5]:  # media: a neutral URL, whatever the file or original URL is called
            out["media"] = f"/media/{battle_id}/{s}"
            out["media_type"] = media_kind(shown[s][5])
        outputs.append(out)
    return {"battle_id": battle_id, "prompt": first[3], "outputs": outputs}


async def _generated(arena: Arena, prompt: Any, k: int
                     ) -> tuple[int, list[tuple[str, str, int]]] | Refusal:
    """A battle on the voter's own prompt: models drawn, every answer generated (at once)
    and stored before anything is shown."""
    from prefkit.arena.content import identity_words
    from prefkit.arena.generate import generate_answers

    if not arena.endpoints:
        return Refusal(400, "this arena has no model endpoints, so it cannot answer your own "
                            "prompt; leave out 'prompt' (or start the server with --endpoints)")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 20_000:
        return Refusal(400, "field 'prompt' must be a non-empty string of at most 20,000 "
                            "characters")
    group = arena.gen_match.next_models(k)
    if group is None:
        return Refusal(503, f"fewer than {k} models have endpoints")
    texts = await generate_answers(arena.backends, arena.endpoints, [m for _, m in group],
                                   prompt)
    if texts is None:
        return Refusal(502, "a model did not answer; try again (no battle was created)")
    names = set(arena.endpoints)
    rows = [(m, t, ",".join(identity_words(t, names))) for (_, m), t in zip(group, texts)]
    key = "voter:" + guard.new_token(9)  # a prompt of its own, never matched again
    pid, oids = await arena.call(arena.store.add_generated, key, prompt, rows)
    for (_, m), t, oid, (_, _, ident) in zip(group, texts, oids, rows):
        arena.outputs[oid] = (m, ident, key, prompt, t, "")
    return pid, [(s, m, oid) for (s, m), oid in zip(group, oids)]


def parse_vote(body: dict[str, Any], slots: list[str]) -> tuple[str | None, list | None, str]:
    """``(outcome, ranking levels of slots, error)`` from a vote body."""
    if "winner" in body:
        w = body["winner"]
        if len(slots) != 2:
            return None, None, (f"this battle has {len(slots)} outputs: send a 'ranking' of "
                                f"the slots {slots}, best first")
        if w not in ("a", "b", "tie", "both_bad"):
            return None, None, f"field 'winner' must be 'a', 'b', 'tie' or 'both_bad', got {w!r}"
        return w, None, ""
    if "ranking" in body:
        r = body["ranking"]
        levels = [lv if isinstance(lv, list) else [lv] for lv in r] if isinstance(r, list) else None
        flat = [s for lv in levels or [] for s in lv]
        if levels is None or sorted(flat) != sorted(slots) or any(not lv for lv in levels):
            return None, None, (f"field 'ranking' must list each slot of {slots} once, best "
                                f"first (an inner list for a tie), got {r!r}")
        return None, levels, ""
    return None, None, "send {\"winner\": \"a\"|\"b\"|\"tie\"|\"both_bad\"} or {\"ranking\": [...]}"


async def cast_vote(arena: Arena, voter: str, ip: str, battle_id: str,
                    body: dict[str, Any]) -> dict[str, Any] | Refusal:
    """Record ``voter``'s vote on a battle (``body`` as the JSON API takes it); returns
    ``{"battle_id", "vote_seq", "models": [{"slot", "model"}], "flags", "duplicate"}``."""
    b = await arena.battle(battle_id)
    if b is None:
        return Refusal(404, f"no battle {battle_id!r}; start another one")
    if b["voter"] != voter:
        return Refusal(403, "this battle was shown to another voter")
    slots = sorted(b["slots"])
    models = [{"slot": s, "model": b["slots"][s][0]} for s in slots]
    if b["vote"] is not None:
        return {"battle_id": battle_id, "vote_seq": b["vote"]["seq"], "models": models,
                "flags": [], "duplicate": True}
    outcome, levels, err = parse_vote(body, slots)
    if err:
        return Refusal(400, err)
    limited = arena.limited(voter, ip)
    if limited:
        return limited
    vid = await arena.voter_id(voter, ip)
    if not arena.cap.known(vid):
        arena.cap.seed(vid, await arena.call(arena.store.votes_today, vid,
                                             arena.cap.day() * 86400.0))
    if not arena.cap.take(vid):
        return Refusal(429, f"daily cap of {plural(arena.cap.cap, 'vote')} reached; come back "
                            "tomorrow (UTC)", {"Retry-After": "3600"})
    words = sorted({w for s in slots for w in b["slots"][s][1].split(",") if w})
    flags = [("identity", ",".join(words))] if words else []
    name = {s: b["slots"][s][0] for s in slots}
    ranking = None if levels is None else json.dumps([[name[s] for s in lv] for lv in levels])
    seq, created = await arena.store.arecord_vote(
        battle_id, vid, model_a=name["a"] if outcome else None,
        model_b=name["b"] if outcome else None, outcome=outcome, ranking=ranking,
        prompt_key=b["prompt_key"], elapsed=time.time() - b["created_at"], flags=flags)
    if not created:
        arena.cap.give_back(vid)
    b["vote"] = {"seq": seq}
    arena.board.poke()
    return {"battle_id": battle_id, "vote_seq": seq, "models": models,
            "flags": [f[0] for f in flags] if created else [], "duplicate": not created}
