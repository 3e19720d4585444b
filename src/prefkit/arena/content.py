"""What the arena shows: prompts and model outputs read from any input prefkit reads, and the
check for outputs that name a model (identity leaks).

An outputs file has one row per (prompt, model): ``prompt_id, prompt, model, output``
(JSON objects or columns with those names), and optionally ``media``: an image, audio
or video output as a file path (relative to the outputs file) or an ``http(s)://`` URL; the
app serves it under a neutral name (``/media/<battle>/<slot>``), never by its path or URL,
and ``output`` may then be empty (a caption otherwise). The file is read by prefkit's shared
reader (:class:`~prefkit.data.table.Table`), as every other command reads its input: JSONL,
a JSON list, CSV with commas, semicolons or tabs (a byte-order mark is dropped), Parquet,
``.gz`` text files and folders written by ``datasets``' ``save_to_disk``; duplicate columns
or JSON keys and text that is not UTF-8 are refused there with the file, line and fix. A
media file larger than ``max_media_bytes`` (:data:`MAX_MEDIA_BYTES` unless given:
``prefkit arena add-outputs --max-media-mb``) is refused with its file, line and size; a
URL's size is only known when the server fetches it, under the same cap (``prefkit arena
serve --max-media-mb``). Bad rows stop the import with one
:class:`~prefkit.data.errors.InvalidRow` per problem (file, line, field, fix); nothing is
dropped silently.

Identity words: an output that contains a model-revealing word is flagged when imported and
every vote on a battle that showed it is set aside (as FastChat's
``fastchat/serve/monitor/clean_battle_data.py`` drops battles whose messages contain one of
its ``IDENTITY_WORDS``; matched case-insensitively). The arena also checks the names of the
registered models.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prefkit.data.errors import InvalidInputError, InvalidRow
from prefkit.data.table import Table
from prefkit.runs import plural

__all__ = ["FIELDS", "IDENTITY_WORDS", "MAX_MEDIA_BYTES", "identity_words", "read_outputs"]

FIELDS = ("prompt_id", "prompt", "model", "output")

#: The largest media file or URL answer an arena takes by default (20 MiB).
MAX_MEDIA_BYTES = 20 * 2**20

#: FastChat 0.2.36's list (``clean_battle_data.IDENTITY_WORDS``), lower-cased, as it uses it.
IDENTITY_WORDS: tuple[str, ...] = tuple(w.lower() for w in (
    "vicuna", "lmsys", "koala", "uc berkeley", "open assistant", "laion", "chatglm",
    "chatgpt", "gpt-4", "openai", "anthropic", "claude", "bard", "palm", "lamda", "google",
    "llama", "qianwan", "alibaba", "mistral", "zhipu", "KEG lab", "01.AI", "AI2", "Tülu",
    "Tulu", "NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE.",
    "$MODERATION$ YOUR INPUT VIOLATES OUR CONTENT MODERATION GUIDELINES.",
    "API REQUEST ERROR. Please increase the number of max tokens.",
    "**API REQUEST ERROR** Reason: The response was blocked.",
    "**API REQUEST ERROR**",
))


def identity_words(text: str, model_names: Iterable[str] = (),
                   words: Iterable[str] = IDENTITY_WORDS) -> list[str]:
    """The identity words (and model names) that ``text`` contains, case-insensitively.

    >>> identity_words("As an AI made by OpenAI ...", ["m1"])
    ['openai']
    """
    low = text.lower()
    found = [w for w in words if w in low]
    found += [m.lower() for m in model_names if len(m) >= 3 and m.lower() in low
              and m.lower() not in found]
    return found


def _problem(table: Table, line: int | None, field: str | None, value: object, reason: str,
             fix: str, kind: str) -> InvalidRow:
    # add-outputs has no --skip-invalid: every problem stops the file, and the command
    # prints them with InvalidInputError.for_cli(can_skip=False) (no hint to skip a row)
    return table.problem(line, reason, fix, kind, field=field, value=value)


_EXAMPLE = ('{"prompt_id": "p1", "prompt": "...", "model": "m1", "output": "..."}')


def _records(table: Table) -> tuple[list[tuple[int, dict]], list[InvalidRow]]:
    """``(line, record)`` of every readable record (lines as an editor shows them; rows for
    Parquet and datasets) and the problems of the records that could not be read, through
    prefkit's shared reader (:class:`~prefkit.data.table.Table`: CSV with commas,
    semicolons or tabs, a byte-order mark, ``.gz``, JSON lists, Parquet, saved datasets;
    duplicate columns or keys and non-UTF-8 text refused)."""
    if table.kind == "txt":
        table.fail(None, "a .txt file holds one text per line, not outputs with fields",
                   f"give a JSONL, JSON, CSV or Parquet file with the fields "
                   f"{', '.join(FIELDS)}", "wrong_shape")
    with table.decoding():
        if table.kind in ("csv", "parquet", "dataset"):
            header = table.header()
            missing = [c for c in FIELDS if c not in header]
            if missing:
                table.fail(None, f"missing {'column' if len(missing) == 1 else 'columns'} "
                           f"{', '.join(missing)} (columns: {', '.join(header) or 'none'})",
                           f"give the columns {', '.join(FIELDS)}", "missing_column",
                           field=missing[0])
        recs = table.records()
    problems = []
    for p in recs.problems:
        if p.kind == "not_an_object":  # the shared reader's fix shows a vote's fields
            p = _problem(table, p.line, p.field, p.value, p.reason,
                         f"write objects like {_EXAMPLE}", p.kind)
        problems.append(p)
    return list(zip(recs.lines, recs.rows)), problems


MEDIA_TYPES = {"image", "audio", "video"}


def media_kind(location: str) -> str | None:
    """``"image"``, ``"audio"`` or ``"video"`` from a media path's or URL's extension."""
    import mimetypes

    kind = (mimetypes.guess_type(location.split("?")[0])[0] or "").split("/")[0]
    return kind if kind in MEDIA_TYPES else None


def read_outputs(path: str | Path, max_media_bytes: int = MAX_MEDIA_BYTES,
                 cap_hint: str = "--max-media-mb") -> list[tuple[str, str, str, str, str]]:
    """Read ``(prompt_id, prompt, model, output, media)`` rows (``media`` an absolute path,
    a URL or ``""``) from any input prefkit reads (:class:`~prefkit.data.table.Table`):
    JSONL, a JSON list, CSV (commas, semicolons or tabs), Parquet, each ``.gz`` too but
    Parquet, or a folder written by ``datasets``' ``save_to_disk``. A media path is relative
    to the folder that holds the outputs file (or the saved dataset folder).

    Raises :class:`~prefkit.data.errors.InvalidInputError` listing every bad row (a record
    that cannot be read, a missing or empty field, a prompt id given with two different
    prompts, a (prompt, model) pair twice, a media file over ``max_media_bytes``;
    ``cap_hint`` names the setting that raises the cap), or the file's one problem (no such
    file, a folder that is not a saved dataset, missing columns, duplicate columns, not
    UTF-8)."""
    path = Path(path)
    table = Table.of(path)
    unit = table.unit
    records, problems = _records(table)
    rows: list[tuple[str, str, str, str, str]] = []
    prompts: dict[str, tuple[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    for line, rec in records:
        n_before = len(problems)
        vals = {}
        media = str(rec.get("media") or "").strip()
        for f in FIELDS:
            v = rec.get(f)
            if f == "output" and media and v in (None, ""):
                v = ""
            elif v is None or (isinstance(v, str) and not v.strip()):
                problems.append(_problem(table, line, f, v, f"missing or empty {f}",
                                         f"give every row a non-empty {f}", "missing_value"))
            vals[f] = "" if v is None else str(v)
        if media:
            if not media.startswith(("http://", "https://")):
                media_path = (path.parent / media).resolve()
                if media_path.is_dir():
                    problems.append(_problem(table, line, "media", media, f"media {media_path} "
                                             "is a folder", "give the path of one image, "
                                             "audio or video file", "is_folder"))
                    continue
                if not media_path.is_file():
                    problems.append(_problem(table, line, "media", media, "no such media file "
                                             f"({media_path})", "give a path relative to the "
                                             "outputs file, or an http(s) URL", "missing_file"))
                elif (size := media_path.stat().st_size) > max_media_bytes:
                    problems.append(_problem(
                        table, line, "media", media, f"media file {media_path} is "
                        f"{plural(size, 'byte')}, over the cap of {plural(max_media_bytes, 'byte')} "
                        f"({max_media_bytes / 2**20:g} MiB)", f"shrink or re-encode the file, "
                        f"or raise the cap ({cap_hint})", "too_large"))
                media = str(media_path)
            if media_kind(media) is None:
                problems.append(_problem(table, line, "media", media, "not an image, audio or "
                                         "video file by its extension", "use e.g. .png, .jpg, "
                                         ".webp, .mp3, .wav, .mp4", "bad_media"))
        if len(problems) > n_before:
            continue
        key, prompt, model = vals["prompt_id"], vals["prompt"], vals["model"]
        if key in prompts and prompts[key][0] != prompt:
            problems.append(_problem(
                table, line, "prompt", prompt, f"prompt_id {key!r} has another prompt at "
                f"{unit} {prompts[key][1]}", "give each prompt_id one prompt text", "conflict"))
            continue
        prompts.setdefault(key, (prompt, line))
        if (key, model) in seen:
            problems.append(_problem(
                table, line, "model", model, f"a second output of model {model!r} for "
                f"prompt_id {key!r} (first at {unit} {seen[key, model]})",
                "keep one output per prompt and model", "duplicate"))
            continue
        seen[key, model] = line
        rows.append((key, prompt, model, vals["output"], media))
    if problems:
        raise InvalidInputError(sorted(problems, key=lambda p: p.line or 0))
    if not rows:
        raise table.empty()
    return rows
