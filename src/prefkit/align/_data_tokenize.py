"""Tokenize alignment records: per prompt, its token ids and its ``K`` responses' ids, the
way TRL 1.16's ``DPOTrainer`` does for pairs, plus a report of every row that truncation cut
or dropped.

How a row becomes tokens (the same ids as TRL for standard and conversational pairs):

- **standard** (text prompt): ``prompt_ids = tokenizer(prompt)`` and, per response,
  ``full = tokenizer(prompt + response + eos_token)`` (the tokenizer adds its BOS if it
  does; EOS is not added twice when the response already ends with it or the tokenizer adds
  one itself);
- **conversational** (messages): ``prompt_ids`` = the chat template of the prompt with the
  generation prompt, ``full`` = the template of the prompt plus an assistant turn holding
  the response (both with ``add_special_tokens=False``, so the template's own BOS counts
  once). The response ids are whatever the template puts after the prompt: the content,
  the end-of-turn token (e.g. EOS) and anything after it (a newline for many templates);
  all of it is scored, as in TRL.

The response starts where ``prompt_ids`` and every ``full`` stop agreeing (usually the end of
``prompt_ids``): when tokens merge across the prompt/response boundary, or the template
renders the prompt alone differently, the merged token goes to the response and the prompt
keeps only the shared part, so ``prompt_ids + response_ids`` is exactly the tokenization of
the full text and the prompt region is never scored. Such rows are noted
(``"boundary_moved"``). A doubled BOS (a standard prompt whose text already starts with
the BOS token) is reduced to one; TRL keeps both.

Truncation (never silent: every cut or dropped row is in :attr:`TokenizedAlignData.report`):

- ``max_prompt_length``: a longer prompt keeps its end (next to the response) and its BOS;
- ``max_length`` (prompt + each response), ``truncation_mode="keep_start"`` (TRL's
  default): responses are cut at their end; a row whose prompt alone has ``max_length``
  tokens or more is dropped (as TRL drops it). ``"keep_end"``: the prompt first loses tokens
  at its start (BOS kept) to make room for the longest response, down to one token (two
  with a BOS); responses still too long are then cut at their end.

KTO's KL partners (unpaired data, ``kl_batch_size=`` or :func:`add_kl_completions`): each
row stores, as ``kl_completion``, the completion it is paired with in KTO's mismatched
(prompt, completion) pairs -- fixed here, when the data is prepared, as TRL 1.16's
``KTOTrainer`` does (see :func:`kl_partners`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from prefkit.data.alignment import AlignmentData, Prompt

__all__ = ["AlignExample", "TokenNote", "TokenizedAlignData", "add_kl_completions",
           "kl_partners", "tokenize_alignment"]


@dataclass
class AlignExample:
    """One tokenized prompt with its ``K`` responses.

    Attributes:
        prompt_ids: the prompt's token ids (BOS and chat template included; never scored).
        responses: each response's token ids (EOS appended), best first; unpaired:
            ``[completion]``.
        label: unpaired only: True = desirable.
        valid: listwise padding (``None`` = all valid).
        kl_completion: unpaired only: the completion ids paired with this prompt in KTO's
            mismatched pairs (its KL partner; see :func:`kl_partners`), ``None`` = not set.
    """

    prompt_ids: list[int]
    responses: list[list[int]]
    label: bool | None = None
    valid: list[bool] | None = None
    kl_completion: list[int] | None = None


Action = Literal["dropped", "prompt_cut", "response_cut", "boundary_moved", "unscored_first"]


@dataclass(frozen=True)
class TokenNote:
    """What tokenization did to one row of the records.

    Attributes:
        index: the row in the records; line: its line in the input (``None`` if unknown).
        action: ``"dropped"`` (left out), ``"prompt_cut"`` / ``"response_cut"`` (tokens
            removed; ``response`` says which response), ``"boundary_moved"`` (the response
            starts before the end of the prompt's own tokenization), ``"unscored_first"``
            (no prompt token at all, so the first response token has no context to be
            scored from).
        tokens: how many tokens were removed or moved.
        reason: the same in words.
    """

    index: int
    line: int | None
    action: Action
    tokens: int
    reason: str
    response: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"row {self.index}"
        return f"{where}: {self.reason}"


@dataclass
class TokenizedAlignData:
    """Tokenized records: one :class:`AlignExample` per kept row, and the report.

    Attributes:
        examples: the examples, in record order (dropped rows left out).
        kind: ``pairwise``, ``unpaired`` or ``listwise``.
        indices: the records' row of each example; source_lines: its input line.
        pad_token_id: the tokenizer's pad token (its EOS if it has none), for :func:`collate`.
        max_length: the ``max_length`` used (``None`` = none).
        report: every row that was dropped, cut or had its boundary moved.
        source: the input's name.
    """

    examples: list[AlignExample]
    kind: str
    indices: list[int]
    source_lines: list[int | None]
    pad_token_id: int
    max_length: int | None = None
    report: list[TokenNote] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> AlignExample:
        return self.examples[i]

    @property
    def dropped(self) -> list[TokenNote]:
        """The rows left out."""
        return [n for n in self.report if n.action == "dropped"]

    @property
    def truncated(self) -> list[TokenNote]:
        """The cuts made to rows that were kept."""
        return [n for n in self.report if n.action in ("prompt_cut", "response_cut")]

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the kind and every example's ids, labels and validity, in order:
        equal for equal tokenized data on every machine (a key for cached reference
        log-probabilities)."""
        h = hashlib.sha256(f"prefkit-align-v1:{self.kind}".encode())
        for e in self.examples:
            h.update(b"\x1e" + ",".join(map(str, e.prompt_ids)).encode())
            for r in e.responses:
                h.update(b"\x1f" + ",".join(map(str, r)).encode())
            h.update(f"|{e.label}|{e.valid}".encode())
            if e.kl_completion is not None:
                h.update(b"\x1d" + ",".join(map(str, e.kl_completion)).encode())
        return h.hexdigest()

    def summary(self) -> str:
        """One line: examples kept, and how many rows were dropped, cut or moved."""
        counts: dict[str, set[int]] = {}
        for n in self.report:
            counts.setdefault(n.action, set()).add(n.index)
        text = f"{len(self):,} {self.kind} examples"
        words = {"dropped": "dropped", "prompt_cut": "prompt cut", "response_cut":
                 "responses cut", "boundary_moved": "prompt/response boundary moved",
                 "unscored_first": "first response token unscored (empty prompt)"}
        parts = [f"{len(counts[a]):,} {w}" for a, w in words.items() if a in counts]
        return text + (" (" + "; ".join(parts) + ")" if parts else "")


# -- encoding -----------------------------------------------------------------------------
class _Encoder:
    """The tokenizer, with the two ways of turning a prompt into ids."""

    def __init__(self, tokenizer: Any, chat_template_kwargs: Mapping[str, Any] | None) -> None:
        self.tok = tokenizer
        self.kw = dict(chat_template_kwargs or {})
        self.bos = tokenizer.bos_token_id
        self.eos_token = tokenizer.eos_token
        probe = tokenizer("a")["input_ids"]
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        eos_id = tokenizer.eos_token_id
        self.auto_eos = eos_id is not None and len(probe) > len(bare) and probe[-1] == eos_id

    def _single_bos(self, ids: list[int]) -> list[int]:
        if self.bos is not None and len(ids) >= 2 and ids[0] == ids[1] == self.bos:
            return ids[1:]
        return ids

    def text(self, text: str) -> list[int]:
        return self._single_bos(list(self.tok(text)["input_ids"]))

    def with_eos(self, response: str) -> str:
        if self.eos_token is None:
            raise ValueError("the tokenizer has no eos_token; set tokenizer.eos_token (the "
                             "model's end-of-sequence token) before tokenizing text data")
        if self.auto_eos or response.endswith(self.eos_token):
            return response
        return response + self.eos_token

    def chat(self, messages: list[dict[str, str]], **kw: Any) -> list[int]:
        if getattr(self.tok, "chat_template", None) is None:
            raise ValueError("conversational data needs a chat template, and this tokenizer "
                             "has none; set tokenizer.chat_template, or give text prompts")
        out = self.tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                           **kw, **self.kw)
        ids = out["input_ids"]
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        return self._single_bos(list(ids))

    def row(self, prompt: Prompt, prefix: str, responses: Sequence[str]
            ) -> tuple[list[int], list[list[int]]]:
        """Prompt ids (the prompt alone) and the full ids of each response."""
        if isinstance(prompt, list):
            if prefix:
                head = self.chat([*prompt, {"role": "assistant", "content": prefix}],
                                 continue_final_message=True)
            else:
                head = self.chat(prompt, add_generation_prompt=True)
            full = [self.chat([*prompt, {"role": "assistant", "content": prefix + r}])
                    for r in responses]
            return head, full
        head = self.text(prompt + prefix)
        return head, [self.text(prompt + prefix + self.with_eos(r)) for r in responses]


def _shared(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _keep_end(ids: list[int], n: int, bos: int | None) -> list[int]:
    """The last ``n`` tokens of ``ids``, its leading BOS kept (``n >= 2``)."""
    if n >= len(ids):
        return ids
    if bos is not None and ids and ids[0] == bos and n >= 2:
        return [bos] + ids[len(ids) - n + 1:]
    return ids[len(ids) - n:]


# -- KTO's KL partners ---------------------------------------------------------------------
T = TypeVar("T")


def kl_partners(items: Sequence[T], batch_size: int) -> list[T]:
    """KTO's KL partner of each item, as TRL 1.16's ``KTOTrainer`` pairs them: the items, in
    order, are cut into consecutive chunks of ``batch_size`` (the per-device train batch
    size) and rotated by one within each chunk, so item ``i`` gets item ``i - 1`` of its
    chunk and the chunk's first gets its last. A last, shorter chunk is rotated within
    itself; a last chunk of ONE item is paired with itself (as in TRL).

    >>> kl_partners(["a", "b", "c", "d", "e"], 2)
    ['b', 'a', 'd', 'c', 'e']
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out: list[T] = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        out += chunk[-1:] + chunk[:-1]
    return out


def add_kl_completions(data: TokenizedAlignData, batch_size: int) -> TokenizedAlignData:
    """A copy of unpaired ``data`` whose every example's ``kl_completion`` is its KL partner's
    completion (:func:`kl_partners` over the examples in data order, dropped rows already
    left out). A completion that ``max_length`` cut is paired as cut;
    ``tokenize_alignment(..., kl_batch_size=)`` pairs the uncut completions, exactly as TRL.
    """
    if data.kind != "unpaired":
        raise ValueError(f"KL completions are for unpaired data (KTO), got {data.kind}")
    partners = kl_partners([e.responses[0] for e in data.examples], batch_size)
    return replace(data, examples=[replace(e, kl_completion=list(p))
                                   for e, p in zip(data.examples, partners)])


# -- the public function ------------------------------------------------------------------
def tokenize_alignment(
    records: AlignmentData,
    tokenizer: Any,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    truncation_mode: Literal["keep_start", "keep_end"] = "keep_start",
    chat_template_kwargs: Mapping[str, Any] | None = None,
    kl_batch_size: int | None = None,
) -> TokenizedAlignData:
    """Token ids of every row of ``records`` (see the module docstring for how), truncated
    to ``max_length`` / ``max_prompt_length`` with every cut and drop reported.

    Args:
        records: from :func:`read_alignment_data` (or built directly).
        tokenizer: a Hugging Face tokenizer (``PreTrainedTokenizerBase``); conversational
            rows need its ``chat_template``.
        max_length: most tokens of prompt + one response (``None`` = no limit).
        max_prompt_length: most prompt tokens (``None`` = no limit).
        truncation_mode: ``"keep_start"`` or ``"keep_end"`` (see the module docstring).
        chat_template_kwargs: extra arguments of ``apply_chat_template`` (e.g. ``tools``).
        kl_batch_size: unpaired data only: set every kept row's ``kl_completion`` (KTO's KL
            partner, :func:`kl_partners` with this per-device train batch size) to its
            partner's completion before ``max_length`` cut it, as TRL (the KL sequence is
            cut to ``max_length`` when it is collated).
    """
    if truncation_mode not in ("keep_start", "keep_end"):
        raise ValueError(f"truncation_mode must be 'keep_start' or 'keep_end', "
                         f"got {truncation_mode!r}")
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if max_prompt_length is not None and max_prompt_length < 1:
        raise ValueError(f"max_prompt_length must be at least 1, got {max_prompt_length}")
    if kl_batch_size is not None and records.kind != "unpaired":
        raise ValueError(f"kl_batch_size is for unpaired data (KTO), got {records.kind}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad token nor an EOS token; set "
                         "tokenizer.pad_token")
    enc = _Encoder(tokenizer, chat_template_kwargs)
    prefixes = records.response_prefix or [""] * len(records)
    out = TokenizedAlignData([], records.kind, [], [], int(pad), max_length, [],
                             records.source)
    uncut: list[list[int]] = []  # each kept row's first response before max_length cut it
    for i in range(len(records)):
        line = records.line(i)

        def note(action: Action, tokens: int, reason: str, response: int | None = None,
                 i: int = i, line: int | None = line) -> None:
            out.report.append(TokenNote(i, line, action, tokens, reason, response))

        head, full = enc.row(records.prompts[i], prefixes[i], records.responses[i])
        n = min(_shared(head, f) for f in full)
        prompt, responses = full[0][:n], [f[n:] for f in full]
        first = responses[0]  # uncut (cuts below make new lists): a KL partner, as TRL
        if n < len(head):
            note("boundary_moved", len(head) - n, f"the response starts {len(head) - n} "
                 "token(s) before the end of the prompt's own tokenization (tokens merge "
                 "across the boundary, or the chat template renders the prompt alone "
                 "differently)")
        empty = next((k for k, r in enumerate(responses) if not r), None)
        if empty is not None:
            note("dropped", len(prompt), f"response {empty} has no tokens of its own",
                 empty)
            continue
        if max_prompt_length is not None and len(prompt) > max_prompt_length:
            note("prompt_cut", len(prompt) - max_prompt_length,
                 f"prompt cut from {len(prompt)} to {max_prompt_length} tokens "
                 "(max_prompt_length; its start removed)")
            prompt = _keep_end(prompt, max_prompt_length, enc.bos)
        if max_length is not None:
            longest = max(len(r) for r in responses)
            if truncation_mode == "keep_end" and len(prompt) + longest > max_length:
                floor = min(len(prompt), 2 if prompt and prompt[0] == enc.bos else 1)
                target = max(max_length - longest, floor)
                if target < len(prompt):
                    note("prompt_cut", len(prompt) - target, f"prompt cut from "
                         f"{len(prompt)} to {target} tokens (max_length {max_length}, "
                         "keep_end; its start removed)")
                    prompt = _keep_end(prompt, target, enc.bos)
            room = max_length - len(prompt)
            if room < 1:
                note("dropped", len(prompt), f"the prompt alone has {len(prompt)} tokens, "
                     f"max_length is {max_length}: no response token would be left "
                     "(raise max_length, set max_prompt_length, or use keep_end)")
                continue
            for k, r in enumerate(responses):
                if len(r) > room:
                    note("response_cut", len(r) - room, f"response {k} cut from {len(r)} to "
                         f"{room} tokens (max_length {max_length}; its end, with the EOS, "
                         "removed)", k)
                    responses[k] = r[:room]
        if not prompt:
            note("unscored_first", 1, "empty prompt and a tokenizer without BOS: the first "
                 "response token has no context and is not scored")
        label = None if records.labels is None else bool(records.labels[i])
        out.examples.append(AlignExample(prompt, responses, label))
        out.indices.append(i)
        out.source_lines.append(line)
        uncut.append(first)
    if kl_batch_size is not None:
        for e, p in zip(out.examples, kl_partners(uncut, kl_batch_size)):
            e.kl_completion = list(p)
    return out
