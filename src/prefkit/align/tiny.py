"""Tiny, fully offline causal language models: for tests, examples and benchmarks.

Nothing here downloads anything:

* :func:`char_tokenizer` -- a character-level ``PreTrainedTokenizerFast`` (printable ASCII +
  newline) with ``<s>`` (BOS, prepended like Llama's), ``</s>`` (EOS), ``<pad>`` and a chat
  template (``<|user|>...\n<|assistant|>...</s>\n``), so conversational data works offline;
* :func:`tiny_llama` -- a Llama-style ``LlamaForCausalLM`` with that vocabulary, built from a
  config and seeded (2 layers, hidden size 32 by default; pass overrides to grow it).

    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    model.save_pretrained("tiny"); tok.save_pretrained("tiny")   # a folder for --model
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["CHAT_TEMPLATE", "SPECIAL", "char_tokenizer", "tiny_llama"]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
    "{% elif m['role'] == 'system' %}<|system|>{{ m['content'] }}\n"
    "{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

SPECIAL = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]


def char_tokenizer() -> Any:
    """A character-level tokenizer with BOS/EOS/pad and a chat template (see the module)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=SPECIAL[3:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(vocab_size: int, seed: int = 0, **overrides: Any) -> Any:
    """A small ``LlamaForCausalLM`` (eval mode) for the :func:`char_tokenizer` vocabulary."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )
    cfg.update(overrides)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))
    model.eval()
    return model
