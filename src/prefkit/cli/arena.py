"""`prefkit arena`: serve the voting app, load outputs, export and import votes.

Thin commands over :mod:`prefkit.arena` (no SQL here: :mod:`prefkit.arena.store` owns it).
"""

from __future__ import annotations

import csv
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from prefkit.cli._common import console, fail, no_such_input, note, print_json
from prefkit.runs import plural

arena_app = typer.Typer(
    help="Run an arena: people vote double-blind between model outputs, the leaderboard "
         "updates live (SQLite or PostgreSQL).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog="Examples:\n\n  prefkit arena add-outputs outputs.jsonl --db arena.db\n\n"
           "  prefkit arena serve --db arena.db --port 8000\n\n"
           "  prefkit arena export --db arena.db votes.csv\n\n"
           "  prefkit arena import battles.jsonl --db arena.db\n",
)

DbOpt = Annotated[str, typer.Option("--db", envvar="PREFKIT_ARENA_DB", help="SQLite file path, or a postgresql:// URL.")]


class Policy(str, Enum):
    exclude = "exclude"
    include = "include"


class BothBad(str, Enum):
    tie = "tie"
    ignore = "ignore"


DEFAULT_MEDIA_MB = 20.0
MediaCapOpt = Annotated[float, typer.Option("--max-media-mb", help="Largest media taken, in MiB (at least 0.001): add-outputs refuses bigger files; serve refuses bigger files and URL answers.")]
PolicyOpt = Annotated[Policy, typer.Option("--flag-policy", help="Flagged votes: set aside (exclude, weight 0) or counted (include).")]
BothBadOpt = Annotated[BothBad, typer.Option("--both-bad", help="Both-bad votes: a tie (half a win each, as LMArena) or ignored.")]


def _media_bytes(mb: float) -> int:
    """The cap in bytes; refused in our own words, on whole lines (typer's min= panel wraps
    at the terminal's width and splits the flag's name in a narrow one)."""
    if not mb >= 0.001:  # nan too
        fail(f"--max-media-mb {mb:g}: give at least 0.001 (MiB), e.g. --max-media-mb 20")
    if not mb * 2**20 < 2**63:  # inf, 1e400 (read as inf) and sizes past any file
        fail(f"--max-media-mb {mb:g}: give a finite size in MiB, e.g. --max-media-mb 100")
    return int(mb * 2**20)


def _not_folder(db: str) -> None:
    if Path(db).expanduser().is_dir():
        fail(f"--db {db} is a folder; give the database file, e.g. {Path(db) / 'arena.db'}")


def _open(db: str):  # type: ignore[no-untyped-def]
    from prefkit.arena.store import open_store

    if not db.startswith(("postgresql://", "postgres://")):
        parent = Path(db).expanduser().resolve().parent
        if not parent.is_dir():
            fail(f"--db {db}: folder {parent} does not exist; create it or give another path")
        _not_folder(db)
    try:
        return open_store(db)
    except Exception as e:  # noqa: BLE001 - the driver's message, with what to check
        fail(f"--db {db}: cannot open the database ({e}); check the path or URL and that the "
             "server is running")


@arena_app.command(epilog="Examples:\n\n  prefkit arena serve --db arena.db\n\n"
                          "  PREFKIT_ARENA_TOKEN=secret prefkit arena serve --db "
                          "postgresql://arena@localhost/arena --host 0.0.0.0 --port 8000 "
                          "--trust-proxy 127.0.0.1\n\n"
                          "  prefkit arena serve --db arena.db --seed 7   # reproducible "
                          "battles (tests, replays)\n")
def serve(
    db: DbOpt,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    fsync_every_vote: Annotated[bool, typer.Option("--fsync-every-vote", help="SQLite: fsync every vote (survives power loss; default: survives kill -9).")] = False,
    rounds: Annotated[int, typer.Option(help="Bootstrap rounds of the live leaderboard (at least 2, as prefkit rank).")] = 1000,
    seed: Annotated[int | None, typer.Option(help="Seed of the matchmaking (which models, prompt and slots each battle shows) and of the leaderboard's bootstrap; for tests, benchmarks and replays: whoever knows it can predict the slots. Default: the bootstrap seeds with 0 (as prefkit rank), the matchmaking from the operating system.")] = None,
    flag_policy: PolicyOpt = Policy.exclude,
    both_bad: BothBadOpt = BothBad.tie,
    voter_rate: Annotated[float, typer.Option(help="Requests per second per voter (0: no limit).", min=0)] = 2.0,
    voter_burst: Annotated[float, typer.Option(help="Burst of requests per voter.", min=0)] = 30.0,
    ip_rate: Annotated[float, typer.Option(help="Requests per second per client address (0: no limit).", min=0)] = 50.0,
    ip_burst: Annotated[float, typer.Option(help="Burst of requests per client address.", min=0)] = 500.0,
    daily_cap: Annotated[int, typer.Option(help="Votes per voter per UTC day (0: no cap).", min=0)] = 1000,
    auto_flag: Annotated[float, typer.Option(help="Run the integrity checks every N seconds and set flagged voters' votes aside (0: only through POST /api/admin/integrity).", min=0)] = 0.0,
    auto_flag_reasons: Annotated[str, typer.Option(help="Checks that flag in automatic rounds, comma-separated: outlier, favouritism, timing.")] = "outlier,favouritism",
    endpoints: Annotated[Path | None, typer.Option(help="JSON file mapping models to OpenAI-compatible endpoints, for battles on voters' own prompts (see prefkit.arena.generate).")] = None,
    trust_proxy: Annotated[list[str] | None, typer.Option("--trust-proxy", help="Address of a reverse proxy whose X-Forwarded-For is trusted (repeatable).")] = None,
    max_media_mb: MediaCapOpt = DEFAULT_MEDIA_MB,
) -> None:
    """Serve the arena: the voting page, the live leaderboard and the JSON API."""
    import uvicorn

    from prefkit.arena.app import ArenaConfig, create_app
    from prefkit.arena.board import BoardConfig
    from prefkit.arena.integrity import REASONS

    reasons = tuple(r.strip() for r in auto_flag_reasons.split(",") if r.strip())
    if not reasons or set(reasons) - set(REASONS):
        fail(f"--auto-flag-reasons {auto_flag_reasons!r}: choose from {', '.join(REASONS)}")
    if endpoints is not None:
        from prefkit.arena.generate import read_endpoints

        try:
            read_endpoints(endpoints)
        except ValueError as e:
            fail(f"--endpoints {e}")
    if rounds < 2:
        fail(f"--rounds {rounds}: the live leaderboard's bootstrap needs at least 2 rounds "
             "(as prefkit rank); e.g. --rounds 1000")
    if seed is not None and seed < 0:
        fail(f"--seed {seed}: give a whole number from 0 (numpy's seeds are non-negative)")
    cap = _media_bytes(max_media_mb)
    _check_port(host, port)
    store = _open(db)  # after the checks above: a refused command creates no database
    try:
        _check_media(store.content(), cap, max_media_mb)
    finally:
        store.close()
    config = ArenaConfig(
        db=db, fsync_every_vote=fsync_every_vote, voter_rate=voter_rate,
        voter_burst=voter_burst, ip_rate=ip_rate, ip_burst=ip_burst, daily_cap=daily_cap,
        trusted_proxies=tuple(trust_proxy or ()),
        endpoints=str(endpoints) if endpoints else None,
        auto_flag=auto_flag, auto_flag_reasons=reasons, seed=seed,
        max_media_bytes=cap,
        board=BoardConfig(rounds=rounds, seed=0 if seed is None else seed,
                          policy=flag_policy.value, both_bad=both_bad.value))
    note(f"prefkit arena on http://{host}:{port} (db {db}; votes survive "
         f"{'power loss' if fsync_every_vote else 'kill -9'} once acknowledged)", style="dim")
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1;
    # the app reads it itself, from --trust-proxy addresses only
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning",
                access_log=False, proxy_headers=False)


def _check_media(content: list[tuple], cap: int, mb: float) -> None:
    """Say at start-up which outputs' media files voters would see broken: over the cap
    (``--max-media-mb`` lower than when they were added) or gone from their path."""
    over, gone = [], []
    for row in content:
        media = row[-1]
        if not media or media.startswith(("http://", "https://")):
            continue
        p = Path(media)
        if not p.is_file():
            gone.append(media)
        elif p.stat().st_size > cap:
            over.append((media, p.stat().st_size))
    if over:
        note(f"warning: the media files of {plural(len(over), 'output')} are over --max-media-mb "
             f"{mb:g} (e.g. {over[0][0]}, {plural(over[0][1], 'byte')}): voters see them as "
             "broken media (502); raise --max-media-mb or add smaller files (prefkit arena "
             "add-outputs)")
    if gone:
        note(f"warning: the media files of {plural(len(gone), 'output')} are gone (e.g. "
             f"{gone[0]}): voters see them as broken media (404); put them back or add the "
             "outputs again")


def _check_port(host: str, port: int) -> None:
    """Refuse a --host/--port that cannot be listened on (in use, not this machine's)
    before the database and the admin token are made (uvicorn would exit 3 after both)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as e:
        fail(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); stop the "
             "server using the port or choose another --port (--host must be an address of "
             "this machine)")


@arena_app.command("add-outputs", epilog="Examples:\n\n  prefkit arena add-outputs "
                   "outputs.jsonl --db arena.db\n\n  prefkit arena add-outputs outputs.csv "
                   "--db postgresql://localhost/arena --json\n\n  prefkit arena add-outputs "
                   "images.jsonl --db arena.db --max-media-mb 50\n")
def add_outputs(
    file: Annotated[Path, typer.Argument(help="JSONL, JSON, CSV, Parquet or a datasets save_to_disk folder with prompt_id, prompt, model, output (and optionally media: an image/audio/video path or URL).")],
    db: DbOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    max_media_mb: MediaCapOpt = DEFAULT_MEDIA_MB,
) -> None:
    """Add prompts and model outputs to an arena (outputs naming a model are flagged)."""
    from prefkit.arena.content import identity_words, read_outputs
    from prefkit.data.errors import InvalidInputError

    if not file.exists():
        no_such_input(file, "outputs", "outputs.jsonl")
    try:
        rows = read_outputs(file, _media_bytes(max_media_mb))
    except InvalidInputError as e:
        fail(e.for_cli(can_skip=False))
    store = _open(db)
    names = set(store.models()) | {r[2] for r in rows}
    data = [(k, p, m, o, ",".join(identity_words(o, names)), media)
            for k, p, m, o, media in rows]
    done = store.add_outputs(data, actor="cli")
    store.close()
    done["identity_flagged"] = sum(1 for r in data if r[4])
    if as_json:
        print_json(done)
        return
    console.print(f"added or updated {plural(done['outputs'], 'output')} of "
                  f"{plural(done['models'], 'model')} on {plural(done['prompts'], 'prompt')} "
                  f"to {db}")
    if done["identity_flagged"]:
        n = done["identity_flagged"]
        note(f"note: {plural(n, 'output')} {'contains' if n == 1 else 'contain'} identity "
             "words (a model or maker's name); votes on battles showing them are set aside")


@arena_app.command(epilog="Examples:\n\n  prefkit arena export --db arena.db votes.csv\n\n"
                          "  prefkit rank votes.csv --rounds 1000 --seed 0 --json   # = GET "
                          "/api/leaderboard\n")
def export(
    out: Annotated[Path, typer.Argument(help="Votes file to write (.csv, .jsonl or .parquet), prefkit's generic vote format.")],
    db: DbOpt,
    flag_policy: PolicyOpt = Policy.exclude,
    both_bad: BothBadOpt = BothBad.tie,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Export every vote in prefkit's vote format with its flags (weight 0 = set aside)."""
    from prefkit.arena.board import BoardConfig, LiveBoard
    from prefkit.arena.tally import EXPORT_COLUMNS, export_rows

    if out.is_dir():
        fail(f"{out} is a folder; give a file name, e.g. {out / 'votes.csv'}")
    if out.suffix.lower() not in (".csv", ".jsonl", ".ndjson", ".parquet"):
        fail(f"{out}: the file name must end in .csv, .jsonl or .parquet (the extension picks "
             "the format)")
    _not_folder(db)
    if not db.startswith(("postgresql://", "postgres://")) and not Path(db).is_file():
        fail(f"--db {db}: no such database; give the file prefkit arena serve or "
             "add-outputs wrote")
    store = _open(db)
    board = LiveBoard(store, BoardConfig(policy=flag_policy.value, both_bad=both_bad.value))
    tally, reasons, weights = board.snapshot()
    store.close()
    if not tally.a:
        fail(f"{db} has no votes to export; collect some with prefkit arena serve, or bring "
             "existing ones with prefkit arena import VOTES --db DB")
    rows = export_rows(tally, reasons, weights)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_votes(out, EXPORT_COLUMNS, rows)
    except OSError as e:
        fail(f"{out}: cannot write it ({e.strerror or e}); choose another path")
    aside = int((weights == 0).sum())
    if as_json:
        print_json({"output": str(out), "votes": len(tally.a), "set_aside": aside,
                    "flag_policy": flag_policy.value})
        return
    console.print(f"wrote {plural(len(tally.a), 'vote')} to {out} ({aside:,} set aside with "
                  f"weight 0, "
                  f"flag policy {flag_policy.value}); `prefkit rank {out} --seed S --rounds R` "
                  "reproduces the live leaderboard of the same seed and rounds")


def _write_votes(out: Path, columns: Any, rows: Any) -> None:
    """The exported votes in the format ``out``'s extension names (CSV, JSONL, Parquet)."""
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([dict(zip(columns, r)) for r in rows]), out)
        return
    with out.open("w", encoding="utf-8", newline="") as f:
        if suffix in (".jsonl", ".ndjson"):
            for r in rows:
                f.write(json.dumps(dict(zip(columns, r))) + "\n")
        else:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(rows)


@arena_app.command("import", epilog="Examples:\n\n  prefkit arena import battles.jsonl --db "
                   "arena.db\n\n  prefkit arena import crowd.csv --db arena.db --format llmfao\n")
def import_votes(
    votes: Annotated[Path, typer.Argument(help="A votes file prefkit rank reads (one vote per row).")],
    db: DbOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format (see `prefkit formats`); auto-detected by default.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Import existing pairwise votes into an arena (they join the leaderboard)."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.readers import read_votes
    from prefkit.data.records import PairwiseVotes

    if not votes.exists():
        no_such_input(votes, "votes", "votes.csv")
    try:
        data = read_votes(votes, format=fmt).votes
    except InvalidInputError as e:
        fail(e.for_cli(can_skip=False))
    except (ValueError, KeyError, OSError) as e:
        fail(f"{votes}: {e}")
    if not isinstance(data, PairwiseVotes):
        fail(f"{votes}: {type(data).__name__} cannot be imported; give one pairwise vote per "
             "row (aggregated counts and rankings have no per-vote rows)")
    names = data.items.names
    labels = ("a", "b", "tie", "both_bad")
    w = data.weight
    if w is not None and not all(x in (0.0, 1.0) for x in set(w.tolist())):
        fail(f"{votes}: weights other than 0 and 1 cannot be imported as votes")
    rows = [(names[data.a[k]], names[data.b[k]], labels[data.outcome[k]],
             None if data.annotator is None else str(data.annotator[k]),
             None if data.prompt is None else str(data.prompt[k]))
            for k in range(len(data)) if w is None or w[k] > 0]
    store = _open(db)
    before = store.vote_count()
    n = store.import_votes(rows, actor="cli")
    store.close()
    unweighted = len(data) - len(rows)  # weight 0: a vote set aside, not one to count
    if as_json:
        print_json({"imported": n, "db": db, "left_out_weight_0": unweighted,
                    "votes_before": before})
        return
    console.print(f"imported {plural(n, 'vote')} into {db}")
    if unweighted:
        note(f"note: left out {plural(unweighted, 'vote')} of {votes} with weight 0 (weight 0 "
             "marks a vote set aside, as arena export writes flagged ones); set the weight to "
             "1 to import such a vote")
    if before:
        note(f"note: {db} already held {plural(before, 'vote')}; the imported ones were added "
             "to them (importing the same file twice counts its votes twice)")
