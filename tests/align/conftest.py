"""Tiny, fully offline language models for the alignment tests (see prefkit.align.tiny).

* ``char_tokenizer()`` -- a character-level ``PreTrainedTokenizerFast`` (printable ASCII +
  newline) with ``<s>`` (BOS, prepended like Llama's), ``</s>`` (EOS), ``<pad>`` and a chat
  template, so conversational data can be tested without any download;
* ``tiny_llama(vocab_size, seed)`` -- a 2-layer Llama with that vocabulary, built from a config;
* the ``tiny_model_dir`` fixture -- both saved to a folder that ``AutoModelForCausalLM`` /
  ``AutoTokenizer.from_pretrained`` (and the CLI's ``--model``) load;
* ``one_thread`` -- torch on one intra-op thread for a module
  (``pytestmark = pytest.mark.usefixtures("one_thread")``).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prefkit.align.tiny import CHAT_TEMPLATE, SPECIAL, char_tokenizer, tiny_llama  # noqa: E402

__all__ = ["CHAT_TEMPLATE", "SPECIAL", "char_tokenizer", "tiny_llama"]


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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, busy machine two
    spinning OpenMP threads make a step 20-40x slower; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
