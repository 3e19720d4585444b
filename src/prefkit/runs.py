"""Run folders: what every training loop of prefkit shares (reward heads, reward fine-tuning,
alignment), so that the loops themselves stay explicit and flat.

    run = RunFolder(out_dir, "reward-train", resume=resume, overwrite=overwrite)
    ck = run.load_checkpoint(config.to_dict(), fingerprints) if run.resuming else None
    if ck is None:
        run.start(config.to_dict())              # clears an old run of ours, writes the marker
    metrics = Metrics(run.metrics_path, [] if ck is None else ck["metrics_rows"])
    with Checkpointing(every_steps=200, every_seconds=300) as due:
        for step ...:
            ...
            if due(step):
                run.save_checkpoint(model=..., optimizer=..., counters..., metrics_rows=...)
                due.raise_if_interrupted(step, run)
    run.finish(summary)

What lives here:

* **the output folder** (:class:`RunFolder`): a training command writes only into a new or
  empty folder or into its own earlier run. A run is recognised by its marker
  ``prefkit_run.json`` (written first, before anything else), or -- for folders written
  before the marker existed -- by the files only prefkit writes (``checkpoint.pt`` with a
  ``format``, ``prefkit_align.json``, ...). Anything else (a model folder, a data folder) is
  never written into, not even with ``overwrite``. ``overwrite`` clears the old run whole
  before the new one writes its marker, so a folder never mixes two runs; ``resume``
  continues from ``checkpoint.pt``, or restarts a run that was stopped before its first
  checkpoint.
* **one checkpoint format** (:data:`CHECKPOINT_FORMAT` 2): ``kind``, the resolved config,
  the model's (trainable) weights under ``"model"``, optimizer, scheduler, RNG states
  (``"rng"``), the counters ``step`` / ``epoch`` / ``step_in_epoch``, data fingerprints
  (``"data"``), package versions and how many ``metrics.jsonl`` rows it covers, plus each
  loop's own state (best epoch, ...). Format 1 checkpoints (``"head"`` and
  ``batch_in_epoch`` in reward-head runs) are upgraded when read.
* **when to checkpoint** (:class:`Checkpointing`): every N steps, every few minutes of
  training (:data:`CHECKPOINT_SECONDS`; the clock is read once per step, nothing more), and
  at SIGINT / SIGTERM, after which the loop stops with :class:`RunInterrupted`.
* metrics JSONL (:class:`Metrics`), the config round trip (:class:`ConfigIO`), package
  versions, the progress bar, AdamW (fused where supported) and the linear LR schedule.

Errors that name what to pass say it twice: ``str(error)`` in Python's words
(``resume=True``) and :meth:`RunError.for_cli` in the command line's (``--resume``).

``import prefkit.runs`` does not import torch; the functions that need it import it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SECONDS",
    "MARKER",
    "Checkpointing",
    "ConfigIO",
    "renamed_keywords",
    "Metrics",
    "NoBar",
    "ProgressBar",
    "RunError",
    "RunFolder",
    "RunInterrupted",
    "adamw",
    "atomic_save",
    "config_diff",
    "json_num",
    "linear_schedule",
    "package_versions",
    "plural",
    "progress_bar",
    "read_metrics",
    "renamed_fields",
    "renamed_keyword_args",
    "rng_state",
    "set_rng_state",
    "write_json",
    "written_by",
]

#: the version of ``checkpoint.pt``; 1: before this module (reward heads wrote ``"head"``
#: and ``batch_in_epoch``), 2: one format for every loop
CHECKPOINT_FORMAT = 2
#: the file that makes a folder a prefkit run; written before anything else
MARKER = "prefkit_run.json"
#: a checkpoint at least this often (seconds of training) by default
CHECKPOINT_SECONDS = 300.0

_IGNORED = {".DS_Store"}  # files that do not make a folder non-empty
# files only prefkit's training commands write (folders from before the marker)
_LEGACY_FILES = ("checkpoint.pt", "prefkit_align.json", "best.safetensors")


# -- errors that speak Python and the command line --------------------------------------------
_PY = {"resume": "resume=True", "overwrite": "overwrite=True", "output": "output_dir"}
_CLI = {"resume": "--resume", "overwrite": "--overwrite", "output": "--output"}


class RunError(FileExistsError):
    """A run folder that cannot be used as asked. ``str()`` names Python keywords
    (``resume=True``); :meth:`for_cli` names the flags (``--resume``)."""

    def __init__(self, template: str, *, py: Mapping[str, str] | None = None,
                 **values: Any) -> None:
        self.template, self.values = template, values
        super().__init__(self._text({**_PY, **(py or {})}))

    def _text(self, words: Mapping[str, str]) -> str:
        return self.template.format(**words, **self.values)

    def for_cli(self) -> str:
        return self._text(_CLI)


class RunInterrupted(KeyboardInterrupt):
    """Training stopped at SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, step: int, folder: Path) -> None:
        self.step, self.folder = step, folder
        self.template = (f"interrupted at step {step}: a checkpoint was written to "
                         f"{folder / 'checkpoint.pt'}; the same command with {{resume}} "
                         "continues the run")
        super().__init__(self.template.format(**_PY))

    def for_cli(self) -> str:
        return self.template.format(**_CLI)


# -- small pieces ---------------------------------------------------------------------------------
def json_num(x: float | None) -> float | None:
    """A float for JSON: None for None, NaN and infinities."""
    return None if x is None or not math.isfinite(x) else float(x)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename: the old file or the new one."""
    import torch

    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python and the packages a checkpoint depends on (plus ``extra``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("prefkit", "torch", "numpy", "sentence-transformers", "transformers", *extra):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


# -- renamed keywords: the old name works for one release, with a DeprecationWarning ----------
def renamed_keywords(kwargs: dict[str, Any], renames: Mapping[str, str], where: str, *,
                     stacklevel: int = 3) -> dict[str, Any]:
    """``kwargs`` with the old names of ``renames`` (old -> new) replaced by the new ones,
    each with a :class:`DeprecationWarning`; both names at once is a :class:`TypeError`."""
    import warnings

    for old, new in renames.items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"{where}: pass {new}= only ({old}= is its old name)")
            warnings.warn(f"{where}: {old}= is now {new}=; the old name will be removed in "
                          "the next release", DeprecationWarning, stacklevel=stacklevel)
            kwargs[new] = kwargs.pop(old)
    return kwargs


def renamed_keyword_args(**renames: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Function decorator: keywords renamed (old=new) still work, with a
    :class:`DeprecationWarning`."""
    import functools

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **renamed_keywords(kwargs, renames, f"{fn.__name__}()"))

        return call

    return wrap


def renamed_fields(**renames: str) -> Callable[[type], type]:
    """Class decorator for a config dataclass whose fields were renamed (old=new): the
    old keyword and attribute still work, with a :class:`DeprecationWarning`, and
    :meth:`ConfigIO.from_dict` (a ``config.json`` or checkpoint written before) maps the
    old keys silently."""
    import functools

    def wrap(cls: type) -> type:
        init = cls.__init__  # type: ignore[misc]

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **renamed_keywords(kwargs, renames, cls.__name__))

        cls.__init__ = __init__  # type: ignore[misc]
        cls.RENAMED = {**getattr(cls, "RENAMED", {}), **renames}  # type: ignore[attr-defined]
        for old, new in renames.items():
            def get(self: Any, _old: str = old, _new: str = new) -> Any:
                import warnings

                warnings.warn(f"{cls.__name__}.{_old} is now .{_new}; the old name will be "
                              "removed in the next release", DeprecationWarning, stacklevel=2)
                return getattr(self, _new)

            setattr(cls, old, property(get))
        return cls

    return wrap


def upgrade_config_keys(cls: Any, d: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config dict with the keys ``cls`` renamed since mapped to their new names."""
    renames = getattr(cls, "RENAMED", {})
    return {renames.get(k, k) if renames.get(k, k) not in d else k: v for k, v in d.items()}


class ConfigIO:
    """Dict/JSON round trip shared by the training configs (frozen dataclasses)."""

    RENAMED: ClassVar[dict[str, str]] = {}  # old field name -> new (see renamed_fields); not a field

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **overrides: Any) -> Any:
        """From a dict (e.g. a run's ``config.json`` entry) plus overrides; unknown keys
        are an error. Keys of fields renamed since (``lr``) are read as the new names."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        overrides = renamed_keywords(dict(overrides), cls.RENAMED, cls.__name__)
        merged = {**upgrade_config_keys(cls, d), **overrides}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**merged)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Any:
        """From a JSON file (a run's ``config.json`` works: its ``"config"`` entry is used)."""
        d = json.loads(Path(path).read_text())
        return cls.from_dict(d.get("config", d), **overrides)


def config_diff(saved: Mapping[str, Any], current: Mapping[str, Any],
                defaults: Mapping[str, Any] | None = None) -> list[str]:
    """The fields where two configs differ; a field the saved config lacks (written before
    the field existed) counts as its default value in ``defaults``."""
    defaults = defaults or {}
    diff = []
    for k in sorted(set(saved) | set(current)):
        old = saved[k] if k in saved else defaults.get(k, object())
        if old != current.get(k, defaults.get(k)):
            diff.append(k)
    return diff


def _defaults(config: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config):
        return {}
    out = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


# -- optimizer, schedule, RNG ---------------------------------------------------------------------
def adamw(params: Iterable[Any], *, lr: float, weight_decay: float = 0.0,
          decay_1d: bool = False) -> Any:
    """AdamW with its fused kernel (one pass over all tensors; torch >= 2.4 on CPU), the
    same update as the per-tensor loop, which on CPU takes ~8-10x longer per step for a
    transformer; the multi-tensor ``foreach`` form where fused is not supported. Weight
    decay skips biases and norms (tensors of 1 dimension) unless ``decay_1d``; with
    ``decay_1d`` there is one parameter group."""
    import torch

    params = [p for p in params if p.requires_grad]
    if decay_1d:
        groups: list[dict[str, Any]] = [{"params": params, "weight_decay": weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, foreach=True)


def linear_schedule(total: int, warmup_steps: int) -> Callable[[int], float]:
    """The LR factor: linear warmup from 0 over ``warmup_steps``, then linear decay to 0 at
    ``total`` (for ``torch.optim.lr_scheduler.LambdaLR``)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total - step) / max(1, total - warmup_steps))
    return factor


def rng_state(device: Any) -> dict[str, Any]:
    """The global torch RNG state (CPU, and the device's on CUDA)."""
    import torch

    state = {"cpu": torch.get_rng_state()}
    if getattr(device, "type", device) == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(device: Any, state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if "cuda" in state and getattr(device, "type", device) == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


# -- progress -----------------------------------------------------------------------------------
class ProgressBar:
    """A rich progress bar (steps or texts) on standard error, so that standard output holds
    only a command's results (``prefkit prm score ... > scores.jsonl``); a no-op where rich
    is missing."""

    def __init__(self, total: int, description: str, completed: int = 0) -> None:
        try:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
        except ImportError:  # pragma: no cover
            self._p = None
            return
        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TimeRemainingColumn(),
                           console=Console(stderr=True))
        self._p.start()
        self._t = self._p.add_task(description, total=total, completed=completed)

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._t, n)

    def update(self, completed: int, description: str) -> None:
        if self._p is not None:
            self._p.update(self._t, completed=completed, description=description)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


class NoBar:
    def advance(self, n: int) -> None: ...

    def update(self, completed: int, description: str) -> None: ...

    def close(self) -> None: ...


def progress_bar(total: int, description: str, completed: int = 0, *,
                 enabled: bool = True) -> ProgressBar | NoBar:
    return ProgressBar(total, description, completed) if enabled else NoBar()


def plural(n: int, noun: str, many: str | None = None) -> str:
    """A count and its noun in agreement, thousands separated: ``plural(1, "vote")`` is
    '1 vote', ``plural(1234, "vote")`` '1,234 votes'; ``many`` for an irregular plural."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"


# -- metrics.jsonl --------------------------------------------------------------------------------
class Metrics:
    """``metrics.jsonl``: the rows a checkpoint covers are kept (later ones, written after
    the checkpoint a resumed run starts from, are dropped), then one line per :meth:`log`.
    ``write=False`` (another process of a multi-process run) keeps the rows in memory."""

    def __init__(self, path: Path, keep_rows: int, *, write: bool = True) -> None:
        self.path, self.write = path, write
        self.history: list[dict[str, Any]] = read_metrics(path)[:keep_rows] if keep_rows else []
        if write:
            path.write_text("".join(json.dumps(r) + "\n" for r in self.history))

    def log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.write:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def __len__(self) -> int:
        return len(self.history)


# -- when to checkpoint ---------------------------------------------------------------------------
class Checkpointing:
    """``due(step)``: a checkpoint is due every ``every_steps`` steps (0: never by count),
    once ``every_seconds`` of training have passed since the last one (None/0: never by
    time), and after SIGINT or SIGTERM (then :meth:`raise_if_interrupted` stops the run).

    Used as a context manager around the loop: it installs the signal handlers (main
    thread only; a second signal interrupts at once) and restores the old ones.
    ``clock=False`` (several processes, which must agree on every checkpoint) keeps the
    step count only."""

    def __init__(self, every_steps: int = 0, every_seconds: float | None = CHECKPOINT_SECONDS,
                 *, clock: bool = True) -> None:
        self.every_steps = every_steps
        self.seconds = every_seconds if clock and every_seconds else 0.0
        self.catch = clock
        self.deadline = math.inf
        self.interrupted = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Checkpointing:
        if self.seconds:
            self.deadline = time.monotonic() + self.seconds
        if self.catch and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.interrupted:  # a second signal: stop now
            raise KeyboardInterrupt
        self.interrupted = True

    def __call__(self, step: int) -> bool:
        if (self.every_steps and step % self.every_steps == 0) or self.interrupted:
            self.deadline = time.monotonic() + self.seconds if self.seconds else math.inf
            return True
        if time.monotonic() >= self.deadline:
            self.deadline = time.monotonic() + self.seconds
            return True
        return False

    def raise_if_interrupted(self, step: int, folder: Path, bar: Any = None) -> None:
        """After the checkpoint: stop the run (closing ``bar``) if a signal came."""
        if self.interrupted:
            if bar is not None:
                bar.close()
            raise RunInterrupted(step, folder)


# -- the folder -----------------------------------------------------------------------------------
def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name not in _IGNORED)


def _legacy_kind(path: Path) -> str | None:
    """The kind of a run folder written before the marker: "" for one of unknown kind,
    None when the folder is not a prefkit run."""
    if (path / "prefkit_align.json").is_file():
        return "align"
    cfg = path / "config.json"
    info: Any = None
    if cfg.is_file():
        try:
            info = json.loads(cfg.read_text())
        except (ValueError, UnicodeDecodeError):
            info = None
    if isinstance(info, dict) and "versions" in info and "config" in info:
        return "reward-finetune" if info.get("kind") == "sequence-scorer" else "reward-train"
    ck = path / "checkpoint.pt"
    if ck.is_file():
        try:
            import torch

            keys = set(torch.load(ck, map_location="cpu", weights_only=True))
        except Exception:  # noqa: BLE001 -- not ours, or damaged: decided below
            return None
        if "format" not in keys or "config" not in keys:
            return None
        if "head" in keys or "batch_in_epoch" in keys:
            return "reward-train"
        return "reward-finetune" if "scorer" in keys else "align"
    metrics = path / "metrics.jsonl"
    if metrics.is_file() and not (path / "config.json").exists():
        try:
            rows = read_metrics(metrics)
        except (ValueError, UnicodeDecodeError):
            return None
        if all(isinstance(r, dict) and r.get("kind") in ("train", "val") for r in rows):
            return ""  # a run stopped before its first checkpoint
    return None


_KINDS = {"reward-train": "prefkit reward train", "reward-finetune": "prefkit reward finetune",
          "align": "prefkit align", "rl": "prefkit rl", "prm-train": "prefkit prm train",
          "prm-finetune": "prefkit prm train --finetune",
          "prm-implicit": "prefkit prm train --kind implicit"}


def run_kind(path: str | Path) -> str | None:
    """The kind of run in ``path`` ("reward-train", "reward-finetune", "align"; "" when
    unknown), or None when it is not a prefkit run folder."""
    path = Path(path)
    if not path.is_dir():
        return None
    marker = path / MARKER
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text()).get("kind", ""))
        except (ValueError, UnicodeDecodeError):
            return ""
    return _legacy_kind(path)


def written_by(path: str | Path) -> str | None:
    """The command that wrote the run folder ``path`` ("prefkit reward train", "prefkit prm
    train --finetune", ...), or None when it is not a prefkit run folder of a known kind (for
    errors that say what a folder given in the wrong place is)."""
    kind = run_kind(path)
    return _KINDS.get(kind) if kind else None


def check_output(path: str | Path, kind: str, *, resume: bool, overwrite: bool) -> None:
    """Raise :class:`RunError` unless a ``kind`` run may write ``path`` as asked (the
    check :class:`RunFolder` makes, for a command to make before its slow set-up)."""
    RunFolder(path, kind, resume=resume, overwrite=overwrite)


class RunFolder:
    """The output folder of one training run; see the module docstring.

    Constructing it only looks (it writes nothing): a file, a foreign folder, a run of
    another command, ``resume`` with ``overwrite``, or a used folder without either, raise
    :class:`RunError`. Then :attr:`resuming` says whether ``checkpoint.pt`` is there to
    continue from; otherwise :meth:`start` begins afresh (clearing an old run whole).
    """

    def __init__(self, path: str | Path, kind: str, *, resume: bool = False,
                 overwrite: bool = False, keyword: str = "output_dir") -> None:
        self.path, self.kind = Path(path), kind
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.metrics_path = self.path / "metrics.jsonl"
        self.marker_path = self.path / MARKER
        where = str(self.path)

        def error(template: str) -> RunError:
            return RunError(template, where=where, py={"output": keyword})

        if resume and overwrite:
            raise error("{resume} and {overwrite} contradict each other: pass one ({resume} "
                        "continues the run in {where}, {overwrite} starts it again)")
        if self.path.exists() and not self.path.is_dir():
            raise error("{where} is a file; {output} must name a folder (a new or empty one, "
                        "or an earlier run of the same command)")
        self.existing: str | None = None  # the kind of run already there
        if self.path.is_dir() and _entries(self.path):
            found = run_kind(self.path)
            if found is None:
                shown = ", ".join(_entries(self.path)[:5])
                raise error(
                    "{where} is not a prefkit run folder (it holds " + shown.replace("{", "{{")
                    .replace("}", "}}") + ", ...); training writes only into a new or empty "
                    "folder or an earlier run of the same command, and {overwrite} clears "
                    "only such runs: choose another {output}")
            if found and found != kind:
                raise error("{where} holds a run of `" + _KINDS.get(found, found) + "`, not of `"
                            + _KINDS.get(kind, kind) + "`; choose another {output}")
            self.existing = found
            if not (resume or overwrite):
                raise error("{where} already holds a run; pass {resume} to continue it (a "
                            "finished run is left as it is), {overwrite} to start again, or "
                            "choose another {output}")
        self.resuming = bool(resume and self.checkpoint_path.is_file())

    # -- writing ------------------------------------------------------------------------------
    def start(self, config: Mapping[str, Any], *, versions: Mapping[str, str] | None = None
              ) -> None:
        """Begin afresh: clear an old run of this folder whole, then write the marker."""
        if self.path.is_dir() and self.existing is not None:
            for entry in self.path.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self._mark("running", config, versions)
        self.existing = self.kind

    def adopt(self, config: Mapping[str, Any]) -> None:
        """A resumed run: write the marker if the folder predates it, status running."""
        self._mark("running", config, None)

    def finish(self, config: Mapping[str, Any], summary: Mapping[str, Any] | None = None
               ) -> None:
        self._mark("finished", config, None, summary)

    def _mark(self, status: str, config: Mapping[str, Any],
              versions: Mapping[str, str] | None, summary: Mapping[str, Any] | None = None
              ) -> None:
        write_json(self.marker_path, {
            "prefkit_run": 1, "kind": self.kind, "command": _KINDS.get(self.kind, self.kind),
            "status": status, "checkpoint_format": CHECKPOINT_FORMAT, "config": dict(config),
            "versions": dict(versions or package_versions()),
            **({"summary": dict(summary)} if summary is not None else {})})

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, *, config: Mapping[str, Any], model: Mapping[str, Any],
                        optimizer: Any, scheduler: Any = None, rng: Mapping[str, Any],
                        step: int, epoch: int, step_in_epoch: int,
                        data: Mapping[str, Any], metrics_rows: int,
                        versions: Mapping[str, str] | None = None, **state: Any) -> None:
        """Write ``checkpoint.pt`` (atomically) in the one format of every loop; ``state``
        is the loop's own (best epoch, flags, ...); ``optimizer`` may be its ``state_dict``
        already (gathered from shards)."""
        atomic_save({
            "format": CHECKPOINT_FORMAT, "kind": self.kind, "config": dict(config),
            "model": model, "optimizer": optimizer if isinstance(optimizer, Mapping)
            else optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "rng": dict(rng), "step": step, "epoch": epoch, "step_in_epoch": step_in_epoch,
            "data": dict(data), "versions": dict(versions or package_versions()),
            "metrics_rows": metrics_rows, **state}, self.checkpoint_path)

    def load_checkpoint(self, config: Any, data: Mapping[str, Any], *,
                        map_location: Any = "cpu", main: bool = True) -> dict[str, Any]:
        """``checkpoint.pt`` upgraded to the current format, after checking that it is this
        run's: the same kind, config (a field added since counts as its default) and data.
        ``config`` is the run's config object (or its dict); ``main``: this process writes
        the marker (a folder from before the marker gets one)."""
        import torch

        ck = torch.load(self.checkpoint_path, map_location=map_location, weights_only=True)
        ck = upgrade_checkpoint(ck, self.checkpoint_path, self.kind)
        current = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        ck["config"] = upgrade_config_keys(type(config), ck["config"])  # lr -> learning_rate
        diff = config_diff(ck["config"], current, _defaults(config))
        if diff:
            raise ValueError(f"{self.checkpoint_path} was written with a different config "
                             f"(fields {diff}); resume with the same config or start a new "
                             "folder")
        if ck["data"] != dict(data):
            raise ValueError(f"{self.checkpoint_path} was trained on different data; resume "
                             "with the same data (and validation) or start a new folder")
        if main:
            self.adopt(current)
        return ck


    @staticmethod
    def restore(ck: Mapping[str, Any], model: Any, optimizer: Any, scheduler: Any = None,
                data_gen: Any = None, *, strict: bool = True) -> tuple[int, int, int]:
        """Load a checkpoint's weights, optimizer, scheduler and data-order generator into
        the loop's objects; returns its counters (step, epoch, step_in_epoch)."""
        model.load_state_dict(ck["model"], strict=strict)
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ck["scheduler"])
        if data_gen is not None:
            data_gen.set_state(ck["rng"]["data"])
        return ck["step"], ck["epoch"], ck["step_in_epoch"]


def upgrade_checkpoint(ck: Mapping[str, Any], path: Path, kind: str) -> dict[str, Any]:
    """A checkpoint of any known format as the current one (format 1: ``"head"`` ->
    ``"model"``, ``batch_in_epoch`` -> ``step_in_epoch``, no scheduler, no kind)."""
    ck = dict(ck)
    fmt = ck.get("format")
    if fmt == 1:
        if "head" in ck:
            ck["model"] = ck.pop("head")
        if "batch_in_epoch" in ck:
            ck["step_in_epoch"] = ck.pop("batch_in_epoch")
        ck.setdefault("scheduler", None)
        ck.setdefault("kind", kind)
        ck["format"] = CHECKPOINT_FORMAT
    elif fmt != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {fmt!r}; this prefkit reads formats 1 "
                         f"to {CHECKPOINT_FORMAT}: resume it with the prefkit that wrote it "
                         "(its version is in the checkpoint's \"versions\"), or start a new run")
    if ck.get("kind", kind) != kind:
        raise ValueError(f"{path} is a checkpoint of `{_KINDS.get(ck['kind'], ck['kind'])}`, "
                         f"not of `{_KINDS.get(kind, kind)}`")
    return ck
