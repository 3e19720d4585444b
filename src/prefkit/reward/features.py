"""What a frozen-encoder reward head reads for one (prompt, response): named feature blocks.

A reward head sees one vector per (prompt, response) row. It is the concatenation, in
this order, of the blocks named in :attr:`FrozenEncoder.features
<prefkit.reward.backbones.FrozenEncoder>` (``RewardTrainConfig.features`` when training):

* ``joint`` -- ``e(render(prompt, response))``: the embedding of the prompt and the response
  as one text (:meth:`prefkit.data.text.TextPairs.texts`); 384 dims for MiniLM. This was
  the only block before, and a folder without a ``features`` entry still means just this.
* ``response`` -- ``e(response)``: the response alone. With left truncation the joint text
  keeps only the last ``max_seq_length`` word pieces, and a long prompt drowns a short
  answer in the mean pooling; the response alone is not diluted by the prompt.
* ``interaction`` -- ``e(prompt) * e(response)``, elementwise (the embeddings have unit
  norm, so the block sums to their cosine): a linear head on it is a diagonal bilinear
  form, i.e. "does this answer address this prompt", which neither embedding says alone.
* ``stats`` -- :data:`STAT_NAMES`, eleven surface statistics of the response and of its
  overlap with the prompt (length in characters, words and lines on a log scale, list
  items, code, repetition, prompt overlap, a cut-off ending, an empty answer). A mean-pooled
  unit-norm sentence embedding cannot see length at all, yet on helpfulness data length is
  the strongest single cue; with it the head can weigh length *against* content, learnt
  from the pairs, instead of not seeing it (or, as a "longer wins" rule, seeing only it).

:func:`pair_vectors` builds the vectors; it embeds every text through the encoder's cache,
so nothing is computed twice. Prompts that are the same for many rows are embedded once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["FEATURE_BLOCKS", "STAT_NAMES", "check_features", "feature_dim", "pair_vectors",
           "text_stats"]

#: the known blocks, in the order they are concatenated
FEATURE_BLOCKS = ("joint", "response", "interaction", "stats")

#: the columns of the ``stats`` block, in order
STAT_NAMES = (
    "log_chars",          # log(1 + characters of the response)
    "log_words",          # log(1 + words)
    "log_lines",          # log(1 + non-empty lines)
    "log_list_items",     # log(1 + lines that start with "-", "*", "1." ...)
    "has_code",           # a ``` fence or an indented code line
    "unique_word_share",  # distinct words / words (1 for an empty answer): repetition
    "prompt_word_share",  # share of the response's distinct words found in the prompt
    "prompt_coverage",    # share of the prompt's distinct words found in the response
    "log_new_words",      # log(1 + distinct response words not in the prompt)
    "cut_off",            # the last character is a letter, digit or comma (truncated)
    "empty",              # the response is empty or whitespace
)

_WORD = re.compile(r"\w+", re.UNICODE)
_LIST = re.compile(r"^\s*(?:[-*\u2022+]|\d+[.)]|[a-zA-Z][.)])\s+")


def check_features(features: Sequence[str]) -> tuple[str, ...]:
    """The blocks as a tuple in canonical order; an unknown or repeated name is an error."""
    feats = tuple(features)
    unknown = [f for f in feats if f not in FEATURE_BLOCKS]
    if unknown:
        raise ValueError(f"unknown feature block(s) {unknown}; choose from {list(FEATURE_BLOCKS)}")
    if not feats or len(set(feats)) != len(feats):
        raise ValueError(f"features must name each block at most once, at least one: {feats}")
    return tuple(f for f in FEATURE_BLOCKS if f in feats)


def feature_dim(features: Sequence[str], emb_dim: int) -> int:
    """Length of one row's vector for these blocks and an ``emb_dim``-d encoder."""
    return sum(len(STAT_NAMES) if f == "stats" else emb_dim for f in check_features(features))


def text_stats(prompts: Sequence[str], responses: Sequence[str]) -> NDArray[np.float32]:
    """The ``stats`` block, ``(N, len(STAT_NAMES))``: one row per (prompt, response).

    >>> s = text_stats(["Name two colours."], ["- red\\n- blue"])
    >>> stats = dict(zip(STAT_NAMES, s[0].tolist()))      # two list items: log(1 + 2)
    >>> abs(stats["log_list_items"] - math.log(3)) < 1e-6
    True
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    prompt_words: dict[str, set[str]] = {}
    out = np.zeros((len(responses), len(STAT_NAMES)), dtype=np.float32)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        pw = prompt_words.get(p)
        if pw is None:
            pw = prompt_words[p] = set(_WORD.findall(p.lower()))
        words = _WORD.findall(r.lower())
        rw = set(words)
        lines = [ln for ln in r.splitlines() if ln.strip()]
        stripped = r.rstrip()
        out[i] = (
            math.log1p(len(r)),
            math.log1p(len(words)),
            math.log1p(len(lines)),
            math.log1p(sum(bool(_LIST.match(ln)) for ln in lines)),
            float("```" in r or any(ln.startswith(("    ", "\t")) for ln in lines)),
            len(rw) / len(words) if words else 1.0,
            len(rw & pw) / len(rw) if rw else 0.0,
            len(rw & pw) / len(pw) if pw else 0.0,
            math.log1p(len(rw - pw)),
            float(bool(stripped) and (stripped[-1].isalnum() or stripped[-1] == ",")),
            float(not stripped),
        )
    return out


def pair_vectors(encoder: Any, features: Sequence[str], prompts: Sequence[str],
                 joint: Sequence[str], responses: Sequence[str], *, batch_size: int = 32,
                 progress: bool = False) -> NDArray[np.float32]:
    """The head's input ``(N, feature_dim)`` for ``N`` rows.

    ``prompts``: each row's prompt as one text (rendered chats, as
    :func:`~prefkit.reward.backbones.prompt_texts` gives them); ``joint``: prompt and
    response as one text (:meth:`~prefkit.data.text.TextPairs.texts`); ``responses``: the
    response alone. Only the texts the blocks need go through ``encoder.encode``.
    """
    feats = check_features(features)
    n = len(joint)
    if not (len(prompts) == len(responses) == n):
        raise ValueError(f"{len(prompts)} prompts, {n} joint texts, {len(responses)} responses")
    blocks: list[NDArray[np.float32]] = []
    resp_emb = prompt_emb = None
    if "response" in feats or "interaction" in feats:
        resp_emb = encoder.encode(list(responses), batch_size=batch_size, progress=progress)
    if "interaction" in feats:
        prompt_emb = encoder.encode(list(prompts), batch_size=batch_size, progress=progress)
    for f in feats:
        if f == "joint":
            blocks.append(encoder.encode(list(joint), batch_size=batch_size, progress=progress))
        elif f == "response":
            blocks.append(resp_emb)  # type: ignore[arg-type]
        elif f == "interaction":
            blocks.append(prompt_emb * resp_emb)  # type: ignore[operator]
        else:
            blocks.append(text_stats(prompts, responses))
    return np.concatenate(blocks, axis=1).astype(np.float32, copy=False)
