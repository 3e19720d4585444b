"""Tiny, fully offline language models for the alignment tests.

* ``char_tokenizer()`` -- a character-level ``PreTrainedTokenizerFast`` (printable ASCII +
  newline) with ``<s>`` (BOS, prepended like Llama's), ``</s>`` (EOS), ``<pad>`` and a chat
  template, so conversational data can be tested without any download;
* ``tiny_llama(seed)`` -- a 2-layer Llama with that vocabulary, built from a config;
* the ``tiny_model_dir`` fixture -- both saved to a folder that ``AutoModelForCausalLM`` /
  ``AutoTokenizer.from_pretrained`` (and the CLI's ``--model``) load.
"""

from __future__ import annotations

import string

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}\n"
    "{% elif m['role'] == 'system' %}<|system|>{{ m['content'] }}\n"
    "{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

SPECIAL = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]


def char_tokenizer():
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


def tiny_llama(vocab_size: int, seed: int = 0, **overrides):
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


@pytest.fixture
def tokenizer():
    return char_tokenizer()


@pytest.fixture
def tiny_model(tokenizer):
    return tiny_llama(len(tokenizer))


@pytest.fixture
def tiny_model_dir(tmp_path, tokenizer, tiny_model):
    path = tmp_path / "tiny-llama"
    tiny_model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
