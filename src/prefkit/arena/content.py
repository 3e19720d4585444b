"""What the arena shows: prompts and model outputs read from JSONL or CSV, and the check for
outputs that name a model (identity leaks).

An outputs file has one row per (prompt, model): ``prompt_id, prompt, model, output``
(JSONL objects or CSV columns with those names), and optionally ``media``: an image, audio
or video output as a file path (relative to the outputs file) or an ``http(s)://`` URL; the
app serves it under a neutral name (``/media/<battle>/<slot>``), never by its path or URL,
and ``output`` may then be empty (a caption otherwise). A media file larger than
``max_media_bytes`` (:data:`MAX_MEDIA_BYTES` unless given: ``prefkit arena add-outputs
--max-media-mb``) is refused with its file, line and size; a URL's size is only known when
the server fetches it, under the same cap (``prefkit arena serve --max-media-mb``). Bad rows stop the import with one
:class:`~prefkit.data.errors.InvalidRow` per problem (file, line, field, fix); nothing is
dropped silently.

Identity words: an output that contains a model-revealing word is flagged when imported and
every vote on a battle that showed it is set aside (as FastChat's
``fastchat/serve/monitor/clean_battle_data.py`` drops battles whose messages contain one of
its ``IDENTITY_WORDS``; matched case-insensitively). The arena also checks the names of the
registered models.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from prefkit.data.errors import InvalidInputError, InvalidRow
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


def _problem(path: str, line: int | None, field: str | None, value: object, reason: str,
             fix: str, kind: str) -> InvalidRow:
    # add-outputs has no --skip-invalid: every problem stops the file, and the command
    # prints them with InvalidInputError.for_cli(can_skip=False) (no hint to skip a row)
    return InvalidRow(path, line, field, value, reason, fix, kind)


def _records(path: Path) -> Iterable[tuple[int, dict]]:
    """``(line, record)`` from a JSONL or CSV file (line numbers as an editor shows them)."""
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise InvalidInputError([_problem(
            name, None, None, None, f"not a JSONL or CSV file (its name ends in {suffix!r})",
            "give a .jsonl or .csv file (decompress a .gz first: gzip -dc FILE.gz > FILE)",
            "unknown_format")])
    try:
        yield from _read_records(path, name)
    except UnicodeDecodeError as e:
        raise InvalidInputError([_problem(
            name, None, None, None, f"not UTF-8 text ({e.reason})",
            f"re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > "
            f"utf8_{path.name}", "not_utf8")]) from None


def _read_records(path: Path, name: str) -> Iterable[tuple[int, dict]]:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as f:
            for k, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise InvalidInputError([_problem(
                        name, k, None, raw.strip(), f"malformed JSON ({e.msg})",
                        "write one JSON object per line", "malformed_json")]) from None
                if not isinstance(rec, dict):
                    raise InvalidInputError([_problem(
                        name, k, None, rec, "not a JSON object",
                        'write objects like {"prompt_id": ..., "prompt": ..., "model": ..., '
                        '"output": ...}', "malformed_json")])
                yield k, rec
        return
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in FIELDS if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInputError([_problem(
                name, None, missing[0], None,
                f"missing column(s) {', '.join(missing)} (columns: "
                f"{', '.join(reader.fieldnames or []) or 'none'})",
                f"give the columns {', '.join(FIELDS)}", "missing_column")])
        for rec in reader:
            yield reader.line_num, rec


MEDIA_TYPES = {"image", "audio", "video"}


def media_kind(location: str) -> str | None:
    """``"image"``, ``"audio"`` or ``"video"`` from a media path's or URL's extension."""
    import mimetypes

    kind = (mimetypes.guess_type(location.split("?")[0])[0] or "").split("/")[0]
    return kind if kind in MEDIA_TYPES else None


def read_outputs(path: str | Path, max_media_bytes: int = MAX_MEDIA_BYTES,
                 cap_hint: str = "--max-media-mb") -> list[tuple[str, str, str, str, str]]:
    """Read ``(prompt_id, prompt, model, output, media)`` rows from JSONL or CSV (``media``
    an absolute path, a URL or ``""``).

    Raises :class:`~prefkit.data.errors.InvalidInputError` listing every bad row (a
    missing or empty field, a prompt id given with two different prompts, a (prompt,
    model) pair twice, a media file over ``max_media_bytes``; ``cap_hint`` names the
    setting that raises the cap)."""
    path = Path(path)
    name = str(path)
    if path.is_dir():
        raise InvalidInputError([_problem(name, None, None, None, "is a folder, not a file",
                                          "give the path of a JSONL or CSV outputs file",
                                          "is_folder")])
    if not path.is_file():
        raise InvalidInputError([_problem(name, None, None, None, "no such file",
                                          "give the path of a JSONL or CSV outputs file",
                                          "missing_file")])
    rows: list[tuple[str, str, str, str, str]] = []
    problems: list[InvalidRow] = []
    prompts: dict[str, tuple[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    for line, rec in _records(path):
        vals = {}
        media = str(rec.get("media") or "").strip()
        for f in FIELDS:
            v = rec.get(f)
            if f == "output" and media and v in (None, ""):
                v = ""
            elif v is None or (isinstance(v, str) and not v.strip()):
                problems.append(_problem(name, line, f, v, f"missing or empty {f}",
                                         f"give every row a non-empty {f}", "missing_value"))
            vals[f] = "" if v is None else str(v)
        if media:
            if not media.startswith(("http://", "https://")):
                media_path = (path.parent / media).resolve()
                if media_path.is_dir():
                    problems.append(_problem(name, line, "media", media, f"media {media_path} "
                                             "is a folder", "give the path of one image, "
                                             "audio or video file", "is_folder"))
                    continue
                if not media_path.is_file():
                    problems.append(_problem(name, line, "media", media, "no such media file "
                                             f"({media_path})", "give a path relative to the "
                                             "outputs file, or an http(s) URL", "missing_file"))
                elif (size := media_path.stat().st_size) > max_media_bytes:
                    problems.append(_problem(
                        name, line, "media", media, f"media file {media_path} is "
                        f"{plural(size, 'byte')}, over the cap of {plural(max_media_bytes, 'byte')} "
                        f"({max_media_bytes / 2**20:g} MiB)", f"shrink or re-encode the file, "
                        f"or raise the cap ({cap_hint})", "too_large"))
                media = str(media_path)
            if media_kind(media) is None:
                problems.append(_problem(name, line, "media", media, "not an image, audio or "
                                         "video file by its extension", "use e.g. .png, .jpg, "
                                         ".webp, .mp3, .wav, .mp4", "bad_media"))
        if any(p.line == line for p in problems[-5:]):
            continue
        key, prompt, model = vals["prompt_id"], vals["prompt"], vals["model"]
        if key in prompts and prompts[key][0] != prompt:
            problems.append(_problem(
                name, line, "prompt", prompt, f"prompt_id {key!r} has another prompt at line "
                f"{prompts[key][1]}", "give each prompt_id one prompt text", "conflict"))
            continue
        prompts.setdefault(key, (prompt, line))
        if (key, model) in seen:
            problems.append(_problem(
                name, line, "model", model, f"a second output of model {model!r} for prompt_id "
                f"{key!r} (first at line {seen[key, model]})",
                "keep one output per prompt and model", "duplicate"))
            continue
        seen[key, model] = line
        rows.append((key, prompt, model, vals["output"], media))
    if problems:
        raise InvalidInputError(problems)
    if not rows:
        raise InvalidInputError([_problem(name, None, None, None, "no rows",
                                          f"add rows with {', '.join(FIELDS)}", "empty_input")])
    return rows
