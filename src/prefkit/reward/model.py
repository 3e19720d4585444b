"""A trained reward model: a frozen encoder plus a head, loaded from a training folder.

    model = RewardModel.load("runs/hh")
    model.score(["How do I bake bread?"], ["Mix flour, water, yeast..."])   # (1,) rewards
    model.best_of_n(prompt, candidates)            # index of the best candidate, all scores
    votes = model.to_votes(prompts, {"model-a": answers_a, "model-b": answers_b})

Texts are rendered exactly as in training, by :meth:`prefkit.data.text.TextPairs.texts`
(a string prompt: ``"{prompt}\\n\\n{response}"``; a prompt given as chat messages: one
``"Role: content"`` line per turn plus ``"Assistant: {response}"``).

**From scores to votes** (:meth:`RewardModel.to_votes`): for every prompt and every pair of
candidate items ``(i, j)``, ``i`` before ``j`` in the mapping's order, one vote with
``a = i``, ``b = j`` and ``d = s_i - s_j``:

* ``mode="deterministic"`` -- ``a`` wins if ``d > tie_tolerance``, ``b`` wins if
  ``d < -tie_tolerance``, else a tie;
* ``mode="sample"`` -- the outcome is drawn from the reward model's own Bradley-Terry
  probability, ``a`` wins with probability ``sigmoid(d)`` (needs ``rng``);
* ``mode="soft"`` -- the deterministic outcome plus ``soft = sigmoid(d)``, which a
  Bradley-Terry fit uses instead of the outcome (expected win counts).

``prompt`` on each vote is the prompt's index, so cluster bootstraps resample prompts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.special import expit

from prefkit.data.records import ItemIndex, PairwiseVotes

from prefkit.reward.backbones import FrozenEncoder, Prompt, prompt_texts, response_texts
from prefkit.reward.heads import RewardHead, build_head

__all__ = ["RewardModel", "best_per_prompt", "scores_to_votes"]


class ScoresResponses:
    """What every reward model can do once it has ``score(prompts, responses) -> rewards``:
    pick the best of N and export votes (shared by :class:`RewardModel` and the fine-tuned
    :class:`~prefkit.reward.scorer.SequenceScorer`)."""

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> NDArray[np.float64]:
        raise NotImplementedError

    def best_of_n(self, prompt: Prompt, candidates: Sequence[str]
                  ) -> tuple[int, NDArray[np.float64]]:
        """``(index of the highest-reward candidate, all rewards)``; the first wins ties."""
        if not candidates:
            raise ValueError("best_of_n needs at least one candidate")
        scores = self.score([prompt] * len(candidates), candidates)
        return int(np.argmax(scores)), scores

    def to_votes(self, prompts: Sequence[Prompt], responses: Mapping[str, Sequence[str]], *,
                 mode: str = "deterministic", rng: np.random.Generator | None = None,
                 tie_tolerance: float = 0.0) -> PairwiseVotes:
        """:class:`~prefkit.data.PairwiseVotes` between the items of ``responses`` (item name
        -> one response per prompt), every pair of items on every prompt; the module
        docstring gives the three modes. Feed the result to ``prefkit rank`` / the rankers."""
        return votes_from_scorer(self.score, prompts, responses, mode=mode, rng=rng,
                                 tie_tolerance=tie_tolerance)


def best_per_prompt(prompts: Sequence[Prompt], scores: NDArray[np.float64]
                    ) -> list[tuple[int, list[int]]]:
    """:meth:`ScoresResponses.best_of_n` for responses already scored: for each distinct
    prompt (in order of first appearance; chat prompts compared by content), ``(index of
    its best response, indices of all its responses)``; the first wins ties."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        key = p if isinstance(p, str) else json.dumps(p, sort_keys=True)
        groups.setdefault(key, []).append(i)
    return [(idx[int(np.argmax(np.asarray(scores)[idx]))], idx) for idx in groups.values()]


class RewardModel(ScoresResponses):
    """``r(x, y) = head(encoder(render(x, y)))``; see the module docstring."""

    def __init__(self, head: RewardHead, encoder: FrozenEncoder,
                 info: Mapping[str, Any] | None = None) -> None:
        self.head = head.eval()
        self.encoder = encoder
        self.info = dict(info or {})

    @classmethod
    def load(cls, folder: str | Path, *, encoder: FrozenEncoder | None = None,
             cache_dir: str | Path | None = "default", check_fingerprint: bool = True,
             ) -> RewardModel:
        """Rebuild from a :func:`~prefkit.reward.train.train_reward_model` folder.

        The encoder named in ``backbone.json`` is used unless ``encoder`` is given; with
        ``check_fingerprint`` a different encoder (other weights or settings) is an error,
        since the head would read embeddings it was not trained on. A fine-tuned
        :class:`~prefkit.reward.scorer.SequenceScorer` folder (``"kind": "sequence-scorer"``)
        loads as that scorer, which has the same ``score``/``best_of_n`` interface.
        """
        import json as _json

        from safetensors.torch import load_file

        folder = Path(folder)
        cfg = folder / "config.json"
        if cfg.is_file() and _json.loads(cfg.read_text()).get("kind") == "sequence-scorer":
            from prefkit.reward.scorer import load_scorer

            return load_scorer(folder)  # type: ignore[return-value]
        missing = [n for n in ("config.json", "model.safetensors", "backbone.json")
                   if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder} is not a finished reward-model folder (missing {missing}); "
                "train_reward_model writes them when a run finishes")
        info = json.loads((folder / "config.json").read_text())
        if "head" not in info:  # another prefkit folder, e.g. a PRM's (config, head weights)
            from prefkit.runs import written_by

            cmd = written_by(folder)
            prm = " (a process reward model: prefkit prm score scores its steps)" if (
                cmd or "").startswith("prefkit prm") else ""
            raise ValueError(f"{folder} is not a reward-model folder: it was written by "
                             f"{cmd or 'something else'}{prm}; give a folder of prefkit "
                             "reward train or prefkit reward finetune")
        backbone = json.loads((folder / "backbone.json").read_text())
        spec = dict(info["head"])
        head = build_head(spec.pop("name"), spec.pop("dim"), **spec)
        head.load_state_dict(load_file(str(folder / "model.safetensors")))
        if encoder is None:
            encoder = FrozenEncoder.from_description(backbone, cache_dir=cache_dir)
        if check_fingerprint and backbone.get("fingerprint"):
            got = encoder.describe()
            keys = ("fingerprint", "max_seq_length", "truncation_side", "features")
            got["features"] = list(got.get("features", ["joint"]))
            backbone = {"features": ["joint"]} | backbone  # folders from before features
            diff = [k for k in keys if got.get(k) != backbone.get(k)]
            if diff:
                raise ValueError(
                    f"the encoder differs from the one this head was trained on ({diff}); "
                    "pass the same encoder or check_fingerprint=False to score anyway")
        return cls(head, encoder, info | {"backbone": backbone, "folder": str(folder)})

    # -- scoring -------------------------------------------------------------------------
    @torch.no_grad()
    def score_embeddings(self, emb: NDArray[np.float32],
                         prompt_emb: NDArray[np.float32] | None = None) -> NDArray[np.float64]:
        """Rewards ``(N,)`` from precomputed embeddings ``(N, D)`` (float64)."""
        e = torch.as_tensor(np.asarray(emb, dtype=np.float32))
        p = None if prompt_emb is None else torch.as_tensor(np.asarray(prompt_emb, np.float32))
        out = self.head(e, p)
        if out.ndim != 1:
            raise ValueError(
                "this head gives one output per attribute; use head.attribute_rewards")
        return out.to(torch.float64).numpy()

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], *,
              batch_size: int = 32, progress: bool = False) -> NDArray[np.float64]:
        """The reward of each ``(prompt, response)`` row, shape ``(N,)``."""
        joint = response_texts(prompts, responses)
        flat = [p if isinstance(p, str) else None for p in prompts]
        msgs = [None if isinstance(p, str) else p for p in prompts]
        ptexts = prompt_texts(flat, msgs)  # type: ignore[arg-type]
        if tuple(getattr(self.encoder, "features", ("joint",))) == ("joint",):
            emb = self.encoder.encode(joint, batch_size=batch_size, progress=progress)
        else:
            emb = self.encoder.pair_vectors(ptexts, joint, list(responses),
                                            batch_size=batch_size, progress=progress)
        pemb = None
        if self.head.needs_prompt:
            pemb = self.encoder.encode(ptexts, batch_size=batch_size)
        return self.score_embeddings(emb, pemb)

def votes_from_scorer(score: Any, prompts: Sequence[Prompt],
                      responses: Mapping[str, Sequence[str]], *, mode: str = "deterministic",
                      rng: np.random.Generator | None = None,
                      tie_tolerance: float = 0.0) -> PairwiseVotes:
    """:meth:`RewardModel.to_votes` for any ``score(prompts, responses) -> rewards``
    (a :class:`RewardModel` or a fine-tuned :class:`~prefkit.reward.scorer.SequenceScorer`)."""
    names = list(responses)
    if len(names) < 2:
        raise ValueError("to_votes needs responses from at least two items")
    n_p = len(prompts)
    for name in names:
        if len(responses[name]) != n_p:
            raise ValueError(f"item {name!r} has {len(responses[name])} responses for "
                             f"{n_p} prompts")
    flat_prompts = [p for _ in names for p in prompts]
    flat_resp = [r for name in names for r in responses[name]]
    s = np.asarray(score(flat_prompts, flat_resp)).reshape(len(names), n_p)  # (items, prompts)
    return scores_to_votes(s, names, mode=mode, rng=rng, tie_tolerance=tie_tolerance)


def scores_to_votes(scores: NDArray[np.float64], names: Sequence[str], *,
                    mode: str = "deterministic", rng: np.random.Generator | None = None,
                    tie_tolerance: float = 0.0) -> PairwiseVotes:
    """Votes from a score table ``scores[item, prompt]`` (rewards of each item's response to
    each prompt); the modes are those of :meth:`RewardModel.to_votes`.

    >>> v = scores_to_votes(np.array([[1.0, 0.0], [0.0, 0.0]]), ["x", "y"])
    >>> v.a.tolist(), v.b.tolist(), v.outcome.tolist()
    ([0, 0], [1, 1], [0, 2])
    """
    if mode not in ("deterministic", "sample", "soft"):
        raise ValueError(f"mode must be 'deterministic', 'sample' or 'soft', got {mode!r}")
    if mode == "sample" and rng is None:
        raise ValueError("mode='sample' needs rng=np.random.default_rng(seed)")
    scores = np.asarray(scores, dtype=np.float64)
    n_items, n_p = scores.shape
    if len(names) != n_items:
        raise ValueError(f"{len(names)} names for {n_items} rows of scores")
    ii, jj = np.triu_indices(n_items, 1)
    a = np.repeat(ii, n_p)
    b = np.repeat(jj, n_p)
    prompt = np.tile(np.arange(n_p), ii.size)
    d = scores[a, prompt] - scores[b, prompt]
    p_a = expit(d)  # P(a beats b) under the model's own Bradley-Terry reading
    if mode == "sample":
        assert rng is not None
        outcome = np.where(rng.random(d.size) < p_a, 0, 1)
    else:
        outcome = np.where(d > tie_tolerance, 0, np.where(d < -tie_tolerance, 1, 2))
    return PairwiseVotes(ItemIndex(tuple(names)), a, b, outcome,
                         prompt=prompt.astype(str).astype(object),
                         annotator=np.full(d.size, "reward-model", dtype=object),
                         soft=p_a if mode == "soft" else None)
