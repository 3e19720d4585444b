"""Packed and prefix-tree rows through FlexAttention (a BlockMask) against the padded SDPA path.

The independent computations: torch's own ``create_block_mask`` over the dense boolean mask
of :meth:`PackedBatch.attention_mask` (itself checked by hand in test_packing.py) for the
block structure; and, for every number, the padded batch of :func:`collate` through the same
weights with SDPA (transformers' default; the padded path test_logprobs.py checks against
TRL 1.16's DPOTrainer). Per-response log-probs, the DPO / listwise losses and every
parameter's gradient must equal it to 1e-5 in float32, on a tiny Llama with GQA (4 query
heads on 2 key/value heads: torch's ``enable_gqa``), with GQA whose head count is not a
power of two (6 on 2: transformers repeats the key/value heads) and without GQA.

**What runs on a CPU.** torch (2.11 to 2.13) runs FlexAttention forward on a CPU -- compiled
by inductor, as transformers always calls it -- but refuses its backward there ("FlexAttention
does not support backward on CPU": a check of the device in ``flex_attention``; inductor has
no CPU backward either). The gradient tests therefore run flex_attention's eager (reference)
implementation -- the same operator, BlockMask and ``mask_mod``, its autograd in plain torch
ops -- with that device check lifted (fixture ``cpu_flex_backward``). That checks the layout,
the BlockMask and transformers' plumbing with gradients; it does not run the fused GPU kernel,
whose speed and numbers on a GPU are unmeasured here. The compiled forward, as a CPU run uses
it (reference passes, the packing check), is tested as it is.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
fa = pytest.importorskip("torch.nn.attention.flex_attention")

from prefkit.align import logprobs as lp
from prefkit.align.data import AlignExample, collate
from prefkit.align.losses import get_align_loss
from prefkit.align.model import attention_implementation, prepare_causal_lm
from prefkit.align.packing import (
    flex_backward_supported,
    pack_examples,
    packed_attention_mask,
    packing_supported,
    uses_block_mask,
)
from prefkit.align.tiny import char_tokenizer, tiny_llama

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: test_packing's rows
from test_packing import listwise_examples, pair_examples  # noqa: E402

ATOL = 1e-5  # float32 (as test_packing.py)
MODES = ("pack", "prefix")
#: tiny Llama head layouts: GQA (torch's enable_gqa), GQA repeated by transformers, MHA
HEADS = {"gqa": {}, "gqa_6on2": {"hidden_size": 48, "num_attention_heads": 6,
                                  "num_key_value_heads": 2},
         "mha": {"num_key_value_heads": 4}}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture
def cpu_flex_backward(monkeypatch):
    """FlexAttention differentiable on a CPU: torch's eager flex_attention (transformers
    would compile it; inductor has no CPU backward) with its CPU device check lifted."""
    from transformers.integrations import flex_attention as hf_flex

    def eager(query, key, value, training=False, **kwargs):
        return fa.flex_attention(query, key, value, **kwargs)

    monkeypatch.setattr(fa, "_validate_device", lambda *a: None)
    monkeypatch.setattr(hf_flex, "compile_friendly_flex_attention", eager)


def long_examples(n: int, seed: int):
    """Prompts and responses long enough for rows of several 128-token blocks."""
    g = torch.Generator().manual_seed(seed)

    def ids(lo: int, hi: int) -> list[int]:
        return torch.randint(3, 90, (int(torch.randint(lo, hi, (1,), generator=g)),),
                             generator=g).tolist()

    return [AlignExample([1] + ids(0, 200), [ids(1, 120), ids(1, 120), ids(1, 60)])
            for _ in range(n)]


def flex_twin(model):
    """A copy of ``model`` (same weights) whose attention is FlexAttention."""
    twin = type(model)(model.config.__class__(**model.config.to_dict()))
    twin.load_state_dict(model.state_dict())
    twin.set_attn_implementation("flex_attention")
    return twin.train(model.training)


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()
            if p.grad is not None}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# -- the BlockMask ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_block_mask_is_torchs_from_the_dense_mask(mode):
    """Every block count and index (partial and full, by key and by query block) equals
    torch's create_block_mask over the dense mask, rows of 1 to 4 blocks; the mask_mod is the
    dense mask token by token."""
    for n, seed in ((2, 0), (4, 1), (9, 2)):
        batch = pack_examples(long_examples(n, seed), 0, mode=mode)
        rows, width = batch.segment.shape
        dense = batch.attention_mask()[:, 0]  # (rows, L, L)
        ours = batch.block_mask()
        theirs = fa.create_block_mask(lambda b, h, q, kv, d=dense: d[b, q, kv], rows, None, width,
                                      width, device="cpu")
        for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
                     "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"):
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), (n, name)
        assert ours.shape == (rows, 1, width, width)
        by_token = fa.create_mask(ours.mask_mod, rows, 1, width, width, device="cpu")[:, 0]
        assert torch.equal(by_token, dense)
    # a prefix tree's row skips blocks: a response's block never sees a sibling's
    if mode == "prefix":
        assert int(ours.kv_num_blocks.sum() + ours.full_kv_num_blocks.sum()) < \
            rows * ours.kv_num_blocks.shape[-1] * (ours.kv_num_blocks.shape[-1] + 1) // 2


def test_only_a_flex_model_gets_a_block_mask(tok):
    model = tiny_llama(len(tok), seed=1)
    batch = pack_examples(pair_examples(tok), 0, mode="prefix")
    assert not uses_block_mask(model)
    assert packed_attention_mask(model, batch).dtype == torch.bool
    model.set_attn_implementation("flex_attention")
    assert uses_block_mask(model)
    assert isinstance(packed_attention_mask(model, batch), fa.BlockMask)


# -- the compiled forward, as transformers calls it ------------------------------------------------
def test_compiled_forward_equals_the_padded_path(tok):
    """No gradients: transformers' compiled flex_attention (inductor's CPU kernel) equals the
    padded SDPA path on prompt trees and packed rows of changing shapes (torch recompiles
    with dynamic sizes: the BlockMask's captured tensors keep one width, which a changing
    one broke: a C++ compile error, torch 2.11 and 2.13). Only these shapes: torch 2.13's
    dynamic CPU kernel was wrong at some lengths (8 and 24 tokens at head dim 8, max |diff|
    ~2 against SDPA with a plain causal mask; torch 2.11's right), torch's bug."""
    model = tiny_llama(len(tok), seed=2)
    flex = flex_twin(model)
    batches = [(pair_examples(tok), "prefix", 0)] + [
        (long_examples(2 + i, seed=20 + i), mode, 1e-6)
        for i, mode in enumerate(("pack", "prefix", "pack"))]
    with torch.no_grad():
        for ex, mode, rtol in batches:
            want = lp.response_logps(model, collate(ex, 0)).policy
            got = lp.response_logps(flex, pack_examples(ex, 0, mode=mode)).policy
            assert torch.allclose(got, want, atol=ATOL, rtol=rtol), (mode, len(ex))


def test_the_packing_check_accepts_flex_and_refuses_a_model_that_ignores_it(
        tok, cpu_flex_backward):
    """packing_supported (eager flex): a FlexAttention model passes; one whose attention
    drops the BlockMask (plain causal attention over the whole row) fails."""
    from transformers.integrations import flex_attention as hf_flex

    model = flex_twin(tiny_llama(len(tok), seed=2))
    assert packing_supported(model)
    blind = flex_twin(tiny_llama(len(tok), seed=2))
    inner = hf_flex.compile_friendly_flex_attention

    def causal_only(query, key, value, training=False, block_mask=None, **kwargs):
        n = query.shape[-2]
        causal = fa.create_block_mask(lambda b, h, q, kv: kv <= q, None, None, n, n,
                                      device=query.device)
        return inner(query, key, value, training=training, block_mask=causal, **kwargs)

    hf_flex.compile_friendly_flex_attention = causal_only
    try:
        assert not packing_supported(blind)
    finally:
        hf_flex.compile_friendly_flex_attention = inner


def test_training_flex_on_a_cpu_is_refused_in_words(tok):
    if flex_backward_supported("cpu"):
        pytest.skip("this torch differentiates FlexAttention on a CPU")
    with attention_implementation("flex"), pytest.raises(ValueError, match="on a CUDA GPU"):
        prepare_causal_lm(tiny_llama(len(tok)), device="cpu")
    # the default attention is untouched
    model = prepare_causal_lm(tiny_llama(len(tok)), device="cpu")[0]
    assert model.config._attn_implementation == "sdpa"


# -- log-probs and gradients (eager flex with its CPU backward) ------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("heads", sorted(HEADS))
def test_dpo_logps_and_gradients_equal_padded_sdpa(tok, mode, heads, cpu_flex_backward):
    model = tiny_llama(len(tok), seed=3, **HEADS[heads])
    flex, ref = flex_twin(model), tiny_llama(len(tok), seed=4, **HEADS[heads])
    ex = pair_examples(tok)
    loss = get_align_loss("dpo")
    out = []
    for m, batch in ((model, collate(ex, 0)), (flex, pack_examples(ex, 0, mode=mode))):
        got = lp.response_logps(m, batch, reference=ref)
        losses = loss(got, beta=0.1).losses
        losses.sum().backward()
        out.append((got, losses.detach(), grads(m)))
    (a, la, ga), (b, lb, gb) = out
    for field in ("policy", "reference", "lengths"):
        assert torch.allclose(getattr(a, field).detach(), getattr(b, field).detach(),
                              atol=ATOL, rtol=0), field
    assert b.policy[2, 1] == 0  # the empty response scores nothing
    assert torch.allclose(la, lb, atol=ATOL, rtol=0)
    assert max_diff(ga, gb) < ATOL


@pytest.mark.parametrize("mode", MODES)
def test_listwise_k3_and_rows_of_several_blocks_equal_padded_sdpa(tok, mode, cpu_flex_backward):
    """K = 3 (an invalid response among them) and long rows that span several 128-token
    blocks (partial and full blocks, skipped ones): gradients to 1e-5; log-probs and losses
    to 1e-5, the long rows' (sums of ~300 tokens, -100 to -500) to 1e-5 + 1e-6 relative:
    measured 3.1e-5 from the padded path, as SDPA's own packed rows (float32 sums in another
    order), and within that of SDPA's packed rows."""
    model = tiny_llama(len(tok), seed=5)
    flex, sdpa = flex_twin(model), tiny_llama(len(tok), seed=5)
    loss = get_align_loss("listwise")
    for ex, rtol in ((listwise_examples(tok), 0), (long_examples(3, seed=7), 1e-6)):
        res = []
        for m, batch in ((model, collate(ex, 0)), (flex, pack_examples(ex, 0, mode=mode))):
            m.zero_grad(set_to_none=True)
            got = lp.response_logps(m, batch)
            got.reference = torch.zeros_like(got.policy) + torch.tensor([[0.3, -0.2, 0.5]])
            losses = loss(got, beta=0.5).losses
            losses.sum().backward()
            res.append((got.policy.detach(), losses.detach(), grads(m)))
        with torch.no_grad():  # SDPA, packed rows: the float32 noise of the layout alone
            same = lp.response_logps(sdpa, pack_examples(ex, 0, mode=mode)).policy
        assert torch.allclose(res[0][0], res[1][0], atol=ATOL, rtol=rtol)
        assert torch.allclose(same, res[1][0], atol=ATOL, rtol=rtol)
        assert torch.allclose(res[0][1], res[1][1], atol=ATOL, rtol=rtol)
        assert max_diff(res[0][2], res[1][2]) < ATOL


# -- prefkit align --attention flex ----------------------------------------------------------------
def test_cli_align_with_flex_equals_the_padded_run(tmp_path, tok, cpu_flex_backward):
    """Three DPO steps: ``--attention flex`` with prefix trees and with packed sequences
    give the losses of the default (SDPA) run with padded rows, to 1e-5."""
    from typer.testing import CliRunner

    from prefkit.cli.main import app

    model_dir = tmp_path / "m"
    tiny_llama(len(tok), seed=13).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}: help with {t}?", "chosen": " Yes.",
                                        "rejected": " No, not " + t + "."}) + "\n"
                            for i, t in enumerate(("tea", "rain", "a long topic", "chess",
                                                   "x", "maths"))))
    runner = CliRunner()
    losses = {}
    for name, extra in (("padded", ["--packing", "none"]),
                        ("flex_prefix", ["--attention", "flex", "--packing", "prefix"]),
                        ("flex_pack", ["--attention", "flex", "--packing", "pack"])):
        res = runner.invoke(app, ["align", "-m", str(model_dir), "-d", str(data), "-o",
                                  str(tmp_path / name), "--max-steps", "3", "--batch-size", "2",
                                  "--lr", "1e-3", "--log-every", "1", "--json", *extra])
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout)
        assert summary["attention"] == ("flex_attention" if "flex" in name else
                                        "the model's own")
        rows = [json.loads(line) for line in
                (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in rows if r.get("kind") == "train"]
    assert len(losses["padded"]) == 3
    for name in ("flex_prefix", "flex_pack"):
        assert losses[name] == pytest.approx(losses["padded"], abs=ATOL), name
    bad = runner.invoke(app, ["align", "-m", str(model_dir), "-d", str(data), "-o",
                              str(tmp_path / "bad"), "--attention", "flash"])
    assert bad.exit_code != 0 and "--attention must be sdpa, eager, flex" in bad.output


# -- on a GPU (skipped here: none was lent to the session that wrote it) ---------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (FlexAttention's kernel)")
@pytest.mark.parametrize("mode", MODES)
def test_cuda_kernel_logps_and_gradients_equal_padded_sdpa(tok, mode):
    """The fused kernel as a run uses it (transformers compiles flex_attention; no lifted
    check): DPO log-probs, losses and gradients of both layouts, rows of several blocks, equal
    padded SDPA on the same GPU to 1e-5 in float32 (TF32 off, torch's default). Unrun so far:
    ``pytest tests/align/test_flex_attention.py -k cuda`` on a GPU."""
    dev = torch.device("cuda")
    model = tiny_llama(len(tok), seed=3, hidden_size=64, num_attention_heads=4,
                       num_key_value_heads=2).to(dev)
    flex = flex_twin(model).to(dev)
    loss = get_align_loss("dpo")
    for ex in (pair_examples(tok), [AlignExample(e.prompt_ids, e.responses[:2])
                                    for e in long_examples(4, seed=9)]):
        out = []
        for m, batch in ((model, collate(ex, 0)), (flex, pack_examples(ex, 0, mode=mode))):
            m.zero_grad(set_to_none=True)
            got = lp.response_logps(m, batch.to(dev))
            got.reference = torch.zeros_like(got.policy)
            losses = loss(got, beta=0.1).losses
            losses.sum().backward()
            out.append((got.policy.detach(), losses.detach(), grads(m)))
        assert torch.allclose(out[0][0], out[1][0], atol=ATOL, rtol=1e-6)
        assert torch.allclose(out[0][1], out[1][1], atol=ATOL, rtol=1e-6)
        assert max_diff(out[0][2], out[1][2]) < ATOL
