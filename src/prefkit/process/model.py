"""Load any PRM folder prefkit writes and score steps with it.

``load_prm(folder)`` reads ``config.json``'s ``kind``: ``"frozen"``
(:class:`~prefkit.process.frozen.FrozenPRM`), ``"finetune"``
(:class:`~prefkit.process.finetune.FinetunedPRM`) or ``"implicit"``
(:class:`~prefkit.process.implicit.ImplicitPRM`). Each has ``score(prompts, steps)`` -> per
solution an array of P(step right) (NaN for a step it could not score), ``threshold`` (tuned
on its training run's validation solutions) and ``config``.

A candidate given as one text is split into steps by :func:`split_steps`: on blank lines
(``"\\n\\n"``, the default :data:`~prefkit.process.frozen.SEPARATOR`), or on any separator
given, empty pieces dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefkit.process.frozen import SEPARATOR

__all__ = ["load_prm", "split_steps"]


def split_steps(text: str, separator: str = SEPARATOR) -> list[str]:
    """A solution written as one text, split into steps on ``separator`` (stripped, empty
    pieces dropped); the whole text is one step when the separator does not occur.

    >>> split_steps("Step 1: 2+2 = 4.\\n\\nStep 2: 4*3 = 12.\\n\\n")
    ['Step 1: 2+2 = 4.', 'Step 2: 4*3 = 12.']
    """
    if not separator:
        raise ValueError("the step separator must not be empty")
    parts = [p.strip() for p in text.split(separator)]
    return [p for p in parts if p] or [text.strip()]


def load_prm(folder: str | Path, *, device: str | Any = None, **kwargs: Any) -> Any:
    """The PRM saved in ``folder`` by ``prefkit prm train`` (or the Python trainers), on
    ``device``: None or "auto" (the GPU if there is one, else the CPU), "cpu", "cuda" or
    "cuda:N" -- wherever it was trained (a PRM trained on a GPU loads on a CPU machine).
    A GPU that is not there is refused with the fix."""
    from prefkit.process.device import resolve_device

    folder = Path(folder)
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: give the folder a PRM was "
                                "trained into (prefkit prm train DATA --output DIR)")
    kind = json.loads(cfg.read_text()).get("kind")
    if kind not in ("frozen", "finetune", "implicit"):  # another prefkit run's folder?
        from prefkit.runs import written_by

        cmd = written_by(folder)
        rm = (f" (a reward model: give it as --reward model:{folder})"
              if (cmd or "").startswith("prefkit reward") else "")
        raise ValueError(f"{folder} is not a process reward model's folder: it was written by "
                         f"{cmd or 'something else'}{rm}; give a folder written by "
                         "prefkit prm train")
    dev = resolve_device(device)
    if kind == "frozen":
        from prefkit.process.frozen import FrozenPRM

        return FrozenPRM.load(folder, device=str(dev), **kwargs)  # the encoder's device
    if kind == "finetune":
        from prefkit.process.finetune import FinetunedPRM

        return FinetunedPRM.load(folder, device=dev, **kwargs)
    from prefkit.process.implicit import ImplicitPRM

    prm = ImplicitPRM.load(folder, **kwargs)  # loads on the CPU
    for model in (prm.policy, prm.reference):
        if model is not None:
            model.to(dev)
    return prm
