"""A local transformers causal LM as a chat backend, its next-token distribution read directly.

    backend = LocalModelBackend("path/to/model")          # or (model, tokenizer) objects
    result = backend.generate(ChatRequest.of("Rate it 1-5.", max_tokens=8, top_logprobs=5))
    dist = backend.label_distribution(ChatRequest.of("A or B?"), ["A", "B"])
    dist["A"], dist["B"], dist.mass                        # mass = P(A) + P(B), never rescaled

**Prompt.** ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` when the
tokenizer has a chat template; otherwise the plain format :data:`PLAIN_FORMAT` documents: each
message as ``"{Role}: {content}\\n\\n"`` (role capitalised), then ``"Assistant:"``, tokenized
with the tokenizer's special tokens (BOS).

**Decoding.** Greedy (argmax at every step; ``temperature`` is ignored, so the answer is
deterministic) until EOS, a ``stop`` string from ``request.extra``, or ``max_tokens``
(default ``default_max_tokens``). When ``top_logprobs`` = k > 0, each generated token comes
with its log-probability under ``log_softmax`` of the model's logits and the k most likely
tokens at that position -- the numbers an OpenAI-compatible server returns (``logprobs=True``
in ``extra`` and k = 0: the tokens' own log-probabilities, no alternatives).

**Label distribution.** P(label) is the probability of the label's first token at the answer
position (the first generated position): the pointwise/pairwise judge protocols read verdict
probabilities from it (G-Eval; TrustJudge's distribution-sensitive scoring). ``mass`` is the
probability that fell on the labels; it is reported, never divided out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .types import ChatRequest, ChatResult, TokenLogprob

__all__ = ["PLAIN_FORMAT", "LabelDistribution", "LocalModelBackend"]

#: How messages become a prompt when the tokenizer has no chat template.
PLAIN_FORMAT = "{Role}: {content}\n\n ... then 'Assistant:'"


class LabelDistribution(Mapping[str, float]):
    """P(label) for each label (a read-only mapping, in the order the labels were given), and
    ``mass``: their sum, the probability the model put on a valid label. ``token_ids`` maps each
    label to the token whose probability was read."""

    def __init__(self, probs: dict[str, float], token_ids: dict[str, int]) -> None:
        self._probs = dict(probs)
        self.token_ids = dict(token_ids)
        self.mass = float(sum(self._probs.values()))

    def __getitem__(self, label: str) -> float:
        return self._probs[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._probs)

    def __len__(self) -> int:
        return len(self._probs)

    def __repr__(self) -> str:
        probs = ", ".join(f"{k!r}: {v:.4g}" for k, v in self._probs.items())
        return f"LabelDistribution({{{probs}}}, mass={self.mass:.4g})"


class LocalModelBackend:
    """A :class:`~prefkit.llm.types.ChatBackend` over a transformers causal LM (see the module).

    Parameters
    ----------
    model_or_path : a ``PreTrainedModel`` or a folder / Hub id ``AutoModelForCausalLM`` loads
    tokenizer : the tokenizer (default: loaded from ``model_or_path``, which must then be a path)
    name : the backend's name in caches and reports (default: the path or the model's
        ``name_or_path``)
    default_max_tokens : tokens generated when a request sets no ``max_tokens``
    """

    concurrency = 1  # one forward pass at a time

    def __init__(self, model_or_path: Any, tokenizer: Any = None, *, name: str | None = None,
                 default_max_tokens: int = 256, device: str | None = None) -> None:
        import torch
        import transformers

        if isinstance(model_or_path, (str, Path)):
            path = str(model_or_path)
            model = transformers.AutoModelForCausalLM.from_pretrained(path)
            tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(path)
            name = name or path
        else:
            model = model_or_path
            if tokenizer is None:
                raise ValueError("LocalModelBackend: pass the tokenizer with a model object "
                                 "(or give a folder that holds both)")
        self.model = model.to(device) if device else model
        self.model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "name_or_path", "") or type(model).__name__
        self.default_max_tokens = default_max_tokens
        self._torch = torch
        self._lock = threading.Lock()

    # -- prompt --------------------------------------------------------------------------------
    def prompt_text(self, request: ChatRequest) -> tuple[str, bool]:
        """The prompt as text, ending where the assistant's answer starts, and whether the
        tokenizer adds its special tokens to it (the plain format: yes; a template: no)."""
        messages = [dict(m) for m in request.messages]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False), False
        return "".join(f"{m['role'].capitalize()}: {m.get('content') or ''}\n\n"
                       for m in messages) + "Assistant:", True

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """Token ids of :meth:`prompt_text`."""
        text, special = self.prompt_text(request)
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _logprobs(self, ids: list[int], past: Any = None) -> tuple[Any, Any]:
        torch = self._torch
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([ids], device=device),
                             past_key_values=past, use_cache=True)
        return torch.log_softmax(out.logits[0, -1].float(), dim=-1), out.past_key_values

    def _token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    # -- generation ----------------------------------------------------------------------------
    def generate(self, request: ChatRequest) -> ChatResult:
        """Greedy answer with per-token log-probabilities (synchronous; thread-safe)."""
        with self._lock:
            try:
                return self._generate(request)
            except Exception as exc:  # noqa: BLE001 - the contract: a failed request is a result
                return ChatResult(text=None, error=f"{type(exc).__name__}: {exc}")

    def _generate(self, request: ChatRequest) -> ChatResult:
        torch = self._torch
        prompt = self.prompt_ids(request)
        max_tokens = request.max_tokens if request.max_tokens is not None \
            else self.default_max_tokens
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None:
            max_tokens = max(0, min(max_tokens, limit - len(prompt)))
        stops = dict(request.extra).get("stop") or ()
        stops = [stops] if isinstance(stops, str) else list(stops)
        eos = self.tokenizer.eos_token_id
        k = request.top_logprobs
        tokens: list[TokenLogprob] = []
        generated: list[int] = []
        finish, text = "length", ""
        logp, past = self._logprobs(prompt) if max_tokens else (None, None)
        for step in range(max_tokens):
            token = int(torch.argmax(logp))
            if token == eos:
                finish = "stop"
                break
            top = ()
            if k > 0:
                values, ids = torch.topk(logp, min(k, logp.numel()))
                top = tuple((self._token_text(int(i)), float(v)) for v, i in zip(values, ids))
            tokens.append(TokenLogprob(self._token_text(token), float(logp[token]), top))
            generated.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            hit = next((s for s in stops if s and s in text), None)
            if hit is not None:
                text, finish = text[:text.index(hit)], "stop"
                break
            if step + 1 < max_tokens:
                logp, past = self._logprobs([token], past)
        want = k > 0 or bool(dict(request.extra).get("logprobs"))
        return ChatResult(text=text, logprobs=tuple(tokens) if want else None,
                          prompt_tokens=len(prompt), completion_tokens=len(generated),
                          finish_reason=finish)

    async def chat(self, request: ChatRequest) -> ChatResult:
        """:meth:`generate` in a worker thread (the event loop keeps running)."""
        return await asyncio.to_thread(self.generate, request)

    # -- label probabilities -------------------------------------------------------------------
    def label_token_ids(self, request: ChatRequest, labels: Sequence[str]) -> dict[str, int]:
        """The first token of each label as it would follow the prompt (tokenized in context,
        so a tokenizer that merges a leading space gets the right piece). Raises ValueError
        when two labels start with the same token (their probabilities could not be told
        apart)."""
        if not labels:
            raise ValueError("label_distribution: no labels given")
        text, special = self.prompt_text(request)
        prompt = self.prompt_ids(request)
        ids: dict[str, int] = {}
        for label in labels:
            if not label:
                raise ValueError("label_distribution: an empty label has no first token")
            full = list(self.tokenizer(text + label, add_special_tokens=special)["input_ids"])
            if full[:len(prompt)] == prompt and len(full) > len(prompt):
                ids[label] = full[len(prompt)]
            else:
                alone = self.tokenizer(label, add_special_tokens=False)["input_ids"]
                ids[label] = next(iter(alone))
        seen: dict[int, str] = {}
        for label, token in ids.items():
            if token in seen:
                raise ValueError(
                    f"label_distribution: labels {seen[token]!r} and {label!r} both start with "
                    f"token {self._token_text(token)!r}, so their first-token probabilities are "
                    "the same number; use labels whose first tokens differ (for a 1-10 scale, "
                    "letters A-J or a 1-9 scale)")
            seen[token] = label
        return ids

    def label_distribution(self, request: ChatRequest,
                           labels: Sequence[str]) -> LabelDistribution:
        """P(first token of each label) at the answer position, and the mass on the labels."""
        ids = self.label_token_ids(request, labels)
        with self._lock:
            logp, _ = self._logprobs(self.prompt_ids(request))
        probs = logp.exp()
        return LabelDistribution({label: float(probs[t]) for label, t in ids.items()}, ids)
