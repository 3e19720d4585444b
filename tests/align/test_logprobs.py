"""Response log-probabilities (prefkit.align.logprobs) on tiny models built here.

Every value is checked against a plain computation written out in this file -- the model's
full logits, float32 log_softmax, gather the next token, sum over the loss mask -- and
against TRL 1.16's DPOTrainer on the same token ids; gradients against autograd through
the plain computation. Also: no (rows, T, vocab) tensor is ever created, padding and
extra rows change nothing, the token-level KL equals a hand computation, and a LoRA
model's reference (adapter disabled) is its base model.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download

import copy  # noqa: E402
import dataclasses  # noqa: E402

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils._pytree import tree_flatten  # noqa: E402

from prefkit.align import logprobs as lp  # noqa: E402
from prefkit.align.data import AlignExample, collate  # noqa: E402
from prefkit.align.logprobs import LMHead, chunked_token_logps, response_logps  # noqa: E402
from prefkit.align.tiny import char_tokenizer, tiny_llama  # noqa: E402

ATOL = 1e-5  # float32 sums of up to ~40 log-probs computed in different orders


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# -- the plain computation every test compares with ------------------------------------------------
def plain_logps(model, batch, k: int | None = None):
    """(B, K) sum over loss_mask of log_softmax(full logits)[t - 1, ids[t]], in float32."""
    k = k or batch.num_responses
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(logits.float()[:, :-1], dim=-1)  # (R, T-1, V)
    tok = logp.gather(2, batch.input_ids[:, 1:, None]).squeeze(2)  # (R, T-1)
    rows = (tok * batch.loss_mask[:, 1:]).sum(dim=1)  # (R,)
    return rows.view(k, -1).t()


def plain_token_kl(policy, reference, batch):
    """(B, K) sum over scored positions of KL(ref(.|ctx) || policy(.|ctx))."""
    def logp(m):
        x = m(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        return torch.log_softmax(x.float()[:, :-1], dim=-1)
    lq, lpol = logp(reference).detach(), logp(policy)
    kl = (lq.exp() * (lq - lpol)).sum(-1)  # (R, T-1)
    return (kl * batch.loss_mask[:, 1:]).sum(1).view(batch.num_responses, -1).t()


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def enc(tok, text: str, bos: bool = False) -> list[int]:
    ids = tok(text)["input_ids"]
    return ids if bos else ids[1:]


@pytest.fixture(scope="module")
def examples(tok):
    """Two pairs with prompts and responses of different lengths (padding inside)."""
    return [AlignExample(enc(tok, "Hi there", True), [enc(tok, " hello</s>"),
                                                      enc(tok, " go away, now</s>")]),
            AlignExample(enc(tok, "What is 2+2?", True), [enc(tok, " 4</s>"),
                                                          enc(tok, " five</s>")])]


def grads(value, model):
    return torch.autograd.grad(value, [p for p in model.parameters() if p.requires_grad],
                               allow_unused=True)


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True)
               if x is not None or y is not None)


# -- values and gradients --------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_matches_full_logits_values_and_gradients(tok, examples, chunk_size):
    model = tiny_llama(len(tok), seed=1).train()
    batch = collate(examples, 0)
    got = response_logps(model, batch, chunk_size=chunk_size)
    want = plain_logps(model, batch)
    assert got.policy.dtype == torch.float32 and got.policy.shape == (2, 2)
    assert torch.allclose(got.policy, want, atol=ATOL, rtol=0)
    assert got.lengths.tolist() == [[7.0, 14.0], [3.0, 6.0]]  # response tokens incl. EOS
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])  # any linear function of the log-probs
    assert max_diff(grads((got.policy * w).sum(), model),
                    grads((want * w).sum(), model)) < ATOL


def test_multi_turn_mask_scores_only_marked_tokens(tok, examples):
    """A loss mask with a hole (two assistant turns, a user turn between) is summed as is."""
    model = tiny_llama(len(tok), seed=2)
    batch = collate(examples, 0)
    mask = batch.loss_mask.clone()
    mask[0, 12:14] = False  # a "user turn" inside row 0's response is not scored
    mask[1, 3:5] = True  # an earlier "assistant turn" inside row 1's prompt is
    batch = dataclasses.replace(batch, loss_mask=mask)
    got = response_logps(model, batch)
    assert torch.allclose(got.policy, plain_logps(model, batch), atol=ATOL, rtol=0)
    assert got.lengths[0, 0] == mask[0].sum() and got.lengths[1, 0] == mask[1].sum()


def test_logit_scale_softcap_and_bias_in_the_chunked_head():
    """The custom autograd function against autograd through the written-out formula."""
    g = torch.Generator().manual_seed(0)
    n, hdim, vocab = 11, 8, 37
    hidden = torch.randn(n, hdim, generator=g, requires_grad=True)
    head = torch.nn.Linear(hdim, vocab, bias=True)
    targets = torch.randint(0, vocab, (n,), generator=g)
    spec = LMHead(torch.nn.Identity(), head, scale=0.7, softcap=3.0)
    got, _ = chunked_token_logps(hidden, spec, targets, chunk_size=4)
    z = 3.0 * torch.tanh(0.7 * head(hidden) / 3.0)
    want = torch.log_softmax(z, -1).gather(1, targets[:, None]).squeeze(1)
    assert torch.allclose(got, want, atol=ATOL, rtol=0)
    w = torch.randn(n, generator=g)
    g_got = torch.autograd.grad((got * w).sum(), [hidden, head.weight, head.bias])
    g_want = torch.autograd.grad((want * w).sum(), [hidden, head.weight, head.bias])
    assert max_diff(g_got, g_want) < ATOL


def test_gemma2_softcapping_and_tied_head_read_from_the_config(tok, examples):
    cfg = transformers.Gemma2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        final_logit_softcapping=2.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.Gemma2ForCausalLM(cfg).eval()
    spec = lp.split_lm_head(model)
    assert spec is not None and spec.softcap == 2.0 and spec.scale == 1.0
    batch = collate(examples, 0)
    got = response_logps(model, batch, chunk_size=5)
    assert lp._CHECKED[model] is True  # the fused path was used, not the fallback
    assert torch.allclose(got.policy, plain_logps(model, batch), atol=ATOL, rtol=0)
    emb = model.get_input_embeddings().weight  # tied to the head: gradients add up
    assert max_diff(grads(got.policy.sum(), model), grads(plain_logps(model, batch).sum(),
                                                          model)) < ATOL
    assert emb.shape[0] == len(tok)


def test_a_split_that_disagrees_with_the_model_falls_back_to_its_logits(tok, examples):
    """A config field the model's forward ignores makes the one-row check fail."""
    model = tiny_llama(len(tok), seed=3)
    model.config.logit_scale = 2.0  # read by the split (Cohere-style) but not by Llama
    batch = collate(examples, 0)
    got = response_logps(model, batch)
    assert lp._CHECKED[model] is False
    assert torch.allclose(got.policy, plain_logps(model, batch), atol=ATOL, rtol=0)


# -- memory: no (rows, T, vocab) tensor ------------------------------------------------------------
class LargestTensor(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest tensor any op produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_no_rows_by_length_by_vocab_tensor_is_created():
    vocab = 50_000
    model = tiny_llama(vocab, seed=0, hidden_size=16, intermediate_size=32,
                       num_attention_heads=2, num_key_value_heads=1).train()
    g = torch.Generator().manual_seed(0)
    exs = [AlignExample(torch.randint(3, vocab, (30,), generator=g).tolist(),
                        [torch.randint(3, vocab, (4,), generator=g).tolist() for _ in range(2)])
           for _ in range(2)]
    batch = collate(exs, 0)
    rows, t = batch.input_ids.shape  # 4 x 34: a full logits tensor has 6.8M entries
    full = rows * t * vocab
    with LargestTensor() as ours:
        response_logps(model, batch, chunk_size=4).policy.sum().backward()
    with LargestTensor() as plain:
        plain_logps(model, batch).sum().backward()
    assert plain.numel >= rows * (t - 1) * vocab  # the recorder sees the full logits ...
    assert ours.numel <= vocab * 16  # ... ours never exceed the head's own weight
    assert ours.numel < full / 8


# -- padding, extra rows, errors -------------------------------------------------------------------
def test_padding_and_extra_rows_change_nothing(tok, examples):
    model = tiny_llama(len(tok), seed=4)
    alone = [response_logps(model, collate([e], 0)).policy for e in examples]
    extra = AlignExample(enc(tok, "A much longer prompt than the others, really", True),
                         [enc(tok, " yes</s>"), enc(tok, " a long long answer</s>")])
    padded = collate([*examples, extra], 0, pad_to_multiple_of=64)
    assert padded.input_ids.shape[1] % 64 == 0 and padded.input_ids.shape[1] > 64
    together = response_logps(model, padded).policy
    for i, a in enumerate(alone):
        assert torch.allclose(together[i], a[0], atol=ATOL, rtol=0)


def test_bad_batches_are_refused(tok, examples):
    model = tiny_llama(len(tok), seed=5)
    batch = collate(examples, 0)
    left = dataclasses.replace(batch, attention_mask=batch.attention_mask.flip(1))
    with pytest.raises(ValueError, match="right-padded"):
        response_logps(model, left)
    first = batch.loss_mask.clone()
    first[0, 0] = True
    with pytest.raises(ValueError, match="position 0"):
        response_logps(model, dataclasses.replace(batch, loss_mask=first))
    with pytest.raises(ValueError, match="needs a reference"):
        response_logps(model, batch, token_kl=True)
    with pytest.raises(TypeError, match="context manager"):
        response_logps(model, batch, reference=3)


# -- reference, token-level KL, KTO's mismatched pairs ---------------------------------------------
def test_reference_and_token_kl_by_hand(tok, examples):
    policy, reference = tiny_llama(len(tok), seed=6).train(), tiny_llama(len(tok), seed=7)
    batch = collate(examples, 0)
    got = response_logps(policy, batch, reference=reference, token_kl=True, chunk_size=4)
    assert torch.allclose(got.reference, plain_logps(reference, batch), atol=ATOL, rtol=0)
    assert not got.reference.requires_grad
    want_kl = plain_token_kl(policy, reference, batch)
    assert torch.allclose(got.token_kl, want_kl, atol=ATOL, rtol=0)
    assert bool((got.token_kl > 0).all())  # different models: KL > 0
    w = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    assert max_diff(grads((got.token_kl * w).sum() + got.policy.sum(), policy),
                    grads((want_kl * w).sum() + plain_logps(policy, batch).sum(), policy)) < ATOL
    same = response_logps(reference, batch, reference=reference, token_kl=True)
    assert float(same.token_kl.detach().abs().max()) < ATOL  # KL of a model with itself


def test_lora_reference_is_the_base_model_with_the_adapter_disabled(tok, examples):
    peft = pytest.importorskip("peft")
    base = tiny_llama(len(tok), seed=8)
    want = plain_logps(base, collate(examples, 0)).detach()
    model = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    batch = collate(examples, 0)
    got = response_logps(model, batch, reference=model.disable_adapter)
    assert torch.allclose(got.reference, want, atol=ATOL, rtol=0)
    assert float((got.policy - want).abs().max().detach()) > 1e-3  # the adapter changes it
    assert torch.allclose(got.policy, plain_logps(model, batch), atol=ATOL, rtol=0)
    named = dict(model.named_parameters())
    g = torch.autograd.grad(got.policy.sum(), [p for p in named.values() if p.requires_grad])
    assert all(float(x.abs().sum()) > 0 for x in g)
    assert all("lora_" in n for n, p in named.items() if p.requires_grad)


def test_kto_mismatched_rows(tok):
    yes, no = enc(tok, " yes</s>"), enc(tok, " no no</s>")
    exs = [AlignExample(enc(tok, "Q one", True), [yes], label=True, kl_completion=no),
           AlignExample(enc(tok, "Q two?", True), [no], label=False, kl_completion=yes)]
    policy, reference = tiny_llama(len(tok), seed=9), tiny_llama(len(tok), seed=10)
    batch = collate(exs, 0)
    got = response_logps(policy, batch, reference=reference)
    kl_batch = dataclasses.replace(batch, input_ids=batch.kl_input_ids,
                                   attention_mask=batch.kl_attention_mask,
                                   loss_mask=batch.kl_loss_mask)
    assert torch.allclose(got.kl_policy, plain_logps(policy, kl_batch)[:, 0], atol=ATOL)
    assert torch.allclose(got.kl_reference, plain_logps(reference, kl_batch)[:, 0], atol=ATOL)
    assert not got.kl_policy.requires_grad and got.label.tolist() == [True, False]


def test_bf16_autocast_stays_close_and_sums_in_float32(tok, examples):
    model = tiny_llama(len(tok), seed=11)
    batch = collate(examples, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = response_logps(model, batch).policy
    assert got.dtype == torch.float32
    want = plain_logps(model, batch)
    assert float(((got - want) / want).abs().max().detach()) < 0.02  # bf16 logits, fp32 sums


# -- TRL -------------------------------------------------------------------------------------------
def test_matches_trl_dpo_trainer_concatenated_forward(tmp_path, tok):
    """TRL 1.16's DPOTrainer tokenizes three text pairs; its collated batch goes through
    its own ``_compute_loss`` (fused LM head) and, as the same token ids, through ours."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model = tiny_llama(len(tok), seed=12)
    pairs = [{"prompt": "Hi there", "chosen": " hello", "rejected": " go away"},
             {"prompt": "What is 2+2?", "chosen": " 4", "rejected": " five, I think"},
             {"prompt": "Name a colour:", "chosen": " teal", "rejected": " loud"}]
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                     per_device_train_batch_size=3, save_strategy="no")
    trainer = DPOTrainer(model=copy.deepcopy(model), ref_model=copy.deepcopy(model), args=args,
                         train_dataset=Dataset.from_list(pairs), processing_class=tok)
    rows = trainer.train_dataset.to_list()
    with torch.no_grad():
        ours = response_logps(model, collate(
            [AlignExample(r["prompt_ids"], [r["chosen_ids"], r["rejected_ids"]]) for r in rows], 0))
    trainer.model.train()
    for i, row in enumerate(rows):  # one pair at a time: TRL logs batch means
        trainer._metrics["train"].clear()
        trainer._compute_loss(trainer.model, trainer.data_collator([row]), False)
        assert abs(trainer._metrics["train"]["logps/chosen"][0] - float(ours.policy[i, 0])) < ATOL
        assert abs(trainer._metrics["train"]["logps/rejected"][0]
                   - float(ours.policy[i, 1])) < ATOL
    trainer._metrics["train"].clear()  # and the three in one padded batch
    trainer._compute_loss(trainer.model, trainer.data_collator(rows), False)
    assert abs(trainer._metrics["train"]["logps/chosen"][0]
               - float(ours.policy[:, 0].mean())) < ATOL
