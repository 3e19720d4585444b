"""Padding-free packing and prefix sharing (prefkit.align.packing) against the padded path.

The independent computation is the padded batch of :func:`prefkit.align.data.collate` scored by
the model's own full logits (``plain_logps`` of test_logprobs.py, itself checked against TRL
1.16's DPOTrainer there): every packed / prefix-shared number -- policy and reference
log-probs per response and per token, the token-level KL, KTO's mismatched pairs, the DPO,
listwise and KTO losses and every parameter's gradient -- must equal it to 1e-5 in float32;
and a few trainer steps with each layout must leave the same weights. The layouts themselves
are checked by hand on a small example, and on the real HH pairs the prefix trees must run
far fewer tokens than padded rows.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


import dataclasses  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from shared_paths import SHARED  # noqa: E402

from prefkit.align import logprobs as lp  # noqa: E402
from prefkit.align.data import (  # noqa: E402
    AlignExample,
    AlignmentData,
    add_kl_completions,
    collate,
    tokenize_alignment,
)
from prefkit.align.losses import get_align_loss  # noqa: E402
from prefkit.align.packing import (  # noqa: E402
    pack_examples,
    packing_supported,
    resolve_packing,
)
from prefkit.align.tiny import char_tokenizer, tiny_llama  # noqa: E402
from prefkit.align.trainer import AlignConfig, align  # noqa: E402

ATOL = 1e-5  # float32, sums of up to ~40 log-probs in different orders (as test_logprobs)
MODES = ("pack", "prefix")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def enc(tok, text: str, bos: bool = False) -> list[int]:
    ids = tok(text)["input_ids"]
    return ids if bos else ids[1:]


def pair_examples(tok):
    """Pairs of different prompt and response lengths, one empty response (HH has those)."""
    return [AlignExample(enc(tok, "Hi there", True), [enc(tok, " hello</s>"),
                                                      enc(tok, " go away, now</s>")]),
            AlignExample(enc(tok, "Q: 2+2?", True), [enc(tok, " 4</s>"), enc(tok, " 5</s>")]),
            AlignExample(enc(tok, "Say nothing.", True), [enc(tok, " ok</s>"), []]),
            AlignExample(enc(tok, "A much longer prompt than the others here", True),
                         [enc(tok, " yes</s>"), enc(tok, " no, not that</s>")])]


def listwise_examples(tok):
    """K = 3 with a padding (invalid) response and a prompt with only two responses."""
    return [AlignExample(enc(tok, "Rank:", True), [enc(tok, " best</s>"), enc(tok, " ok</s>"),
                                                   enc(tok, " bad answer</s>")]),
            AlignExample(enc(tok, "Order these", True), [enc(tok, " a</s>"), enc(tok, " bb</s>")]),
            AlignExample(enc(tok, "Three?", True), [enc(tok, " x</s>"), enc(tok, " yy</s>"),
                                                     enc(tok, " zzz</s>")],
                         valid=[True, True, False])]


def kto_examples(tok):
    data = AlignmentData("unpaired", ["Is tea hot?", "Is ice cold?", "Is fire wet?"],
                         [[" yes"], [" yes, very"], [" of course"]], labels=[True, True, False])
    return add_kl_completions(tokenize_alignment(data, tok), 3).examples


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()
            if p.grad is not None}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def padded_tokens(model, batch):
    """Per-token log-probs of a padded batch in response-major order (the engine's)."""
    ids, attn, mask = lp._trim(batch.input_ids, batch.attention_mask, batch.loss_mask)
    prev = torch.zeros_like(mask)
    prev[:, :-1] = mask[:, 1:]
    where = prev.flatten().nonzero().squeeze(1)
    targets = ids.flatten()[where + 1]
    return lp._token_values(lp._score_positions(model, lp._Inputs(ids, attn), where),
                            targets, None)[0]


def packed_tokens(model, packed):
    scored = lp._score_positions(model, lp._Inputs(packed.input_ids, packed=packed),
                                 packed.where)
    return lp._token_values(scored, packed.targets, None)[0]


# -- the layout, by hand ---------------------------------------------------------------------------
def test_prefix_tree_layout_and_mask_by_hand():
    ex = [AlignExample([1, 5], [[6, 2], [7, 8, 2]]), AlignExample([1], [[9, 2], [4, 2]])]
    b = pack_examples(ex, 0, mode="prefix")
    # the longest tree (7 tokens) sets the width; the second (5) does not fit beside it
    assert b.input_ids.tolist() == [[1, 5, 6, 2, 7, 8, 2], [1, 9, 2, 4, 2, 0, 0]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 2, 3, 4], [0, 1, 2, 1, 2, 0, 0]]
    # response-major: (k=0, b=0), (k=0, b=1), (k=1, b=0), (k=1, b=1)
    assert b.targets.tolist() == [6, 2, 9, 2, 7, 8, 2, 4, 2]
    assert b.where.tolist() == [1, 2, 7, 8, 1, 4, 5, 7, 10]
    assert b.scored.sum(1).tolist() == [2, 2, 3, 2]
    m = b.attention_mask()[1, 0].int()  # row 1: prompt [1], responses [9, 2] and [4, 2]
    assert m.tolist() == [[1, 0, 0, 0, 0, 0, 0],
                          [1, 1, 0, 0, 0, 0, 0],
                          [1, 1, 1, 0, 0, 0, 0],
                          [1, 0, 0, 1, 0, 0, 0],  # response 1 sees the prompt, not response 0
                          [1, 0, 0, 1, 1, 0, 0],
                          [0, 0, 0, 0, 0, 1, 0],  # filler sees only itself
                          [0, 0, 0, 0, 0, 0, 1]]
    add = b.attention_mask(torch.float32)  # eager attention's additive form
    assert torch.equal(add == 0, b.attention_mask())
    assert float(add.min()) == torch.finfo(torch.float32).min


def test_pack_layout_puts_short_sequences_beside_long_ones():
    ex = [AlignExample([1, 5, 5, 5], [[6, 2], [7, 8, 8, 2]]), AlignExample([1], [[9], []])]
    b = pack_examples(ex, 0, mode="pack")
    # sequences 8, 6 and 2 tokens long (the empty response runs nothing): rows of 8
    assert b.input_ids.tolist() == [[1, 5, 5, 5, 7, 8, 8, 2], [1, 5, 5, 5, 6, 2, 1, 9]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 0, 1]]
    m = b.attention_mask()[1, 0].int()
    assert m[7].tolist() == [0, 0, 0, 0, 0, 0, 1, 1]  # the second sequence starts afresh
    assert b.scored.sum(1).tolist() == [2, 1, 4, 0]
    with pytest.raises(ValueError, match="mode must be"):
        pack_examples(ex, 0, mode="padded")


def test_hh_prompts_are_most_of_the_tokens(tok):
    """On the real HH harmless-base pairs, padded rows hold ~28% padding and run every prompt
    twice: packing runs fewer positions, a prompt tree far fewer."""
    path = SHARED / "data" / "reward" / "hh_rlhf_harmless_base_test.jsonl.gz"
    from prefkit.align.data import read_alignment_data

    data = read_alignment_data(path)
    small = AlignmentData("pairwise", data.prompts[:120], data.responses[:120])
    ex = tokenize_alignment(small, tok, max_length=512).examples[:64]  # long prompts dropped
    assert len(ex) == 64
    padded = sum(collate(ex[i:i + 16], 0).input_ids.numel() for i in range(0, 64, 16))
    real = sum(2 * len(e.prompt_ids) + sum(map(len, e.responses)) for e in ex)
    tree = sum(len(e.prompt_ids) + sum(map(len, e.responses)) for e in ex)
    packed = {m: sum(pack_examples(ex[i:i + 16], 0, mode=m).input_ids.numel()
                     for i in range(0, 64, 16)) for m in MODES}
    # measured (characters): real / padded 0.71, tree / real 0.66, pack / real 1.11,
    # prefix / padded 0.58 -- every forward runs fewer positions than the padded one
    assert real / padded < 0.8  # padding
    assert packed["pack"] < 1.2 * real < padded  # little filler left
    assert tree < 0.75 * real and packed["prefix"] < 0.7 * padded


# -- the same numbers as the padded path -----------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_dpo_logps_loss_and_gradients_equal_the_padded_path(tok, mode, attn):
    model = tiny_llama(len(tok), seed=3)
    model.config._attn_implementation = attn
    ref = tiny_llama(len(tok), seed=4)
    ex = pair_examples(tok)
    padded, packed = collate(ex, 0), pack_examples(ex, 0, mode=mode)
    assert packing_supported(model)
    loss = get_align_loss("dpo")
    out = {}
    for name, batch in (("padded", padded), ("packed", packed)):
        model.zero_grad(set_to_none=True)
        got = lp.response_logps(model, batch, reference=ref)
        losses = loss(got, beta=0.1).losses
        losses.sum().backward()
        out[name] = (got, losses.detach(), grads(model))
    (a, la, ga), (b, lb, gb) = out["padded"], out["packed"]
    for field in ("policy", "reference", "lengths"):
        assert torch.allclose(getattr(a, field).detach(), getattr(b, field).detach(),
                              atol=ATOL, rtol=0), field
    assert b.policy[2, 1] == 0 and b.lengths[2, 1] == 0  # the empty response scores nothing
    assert torch.allclose(la, lb, atol=ATOL, rtol=0)
    assert max_diff(ga, gb) < ATOL
    with torch.no_grad():
        assert torch.allclose(padded_tokens(model, padded), packed_tokens(model, packed),
                              atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_listwise_loss_and_gradients_equal_the_padded_path(tok, mode):
    model = tiny_llama(len(tok), seed=5)
    ex = listwise_examples(tok)
    padded, packed = collate(ex, 0), pack_examples(ex, 0, mode=mode)
    assert packed.num_responses == 3 and torch.equal(packed.valid, padded.valid)
    loss = get_align_loss("listwise")
    res = []
    for batch in (padded, packed):
        model.zero_grad(set_to_none=True)
        got = lp.response_logps(model, batch, reference=model)  # its own reference
        assert torch.allclose(got.policy.detach(), got.reference, atol=ATOL, rtol=0)
        got.reference = got.reference + torch.tensor([[0.3, -0.2, 0.5]])  # non-zero ratios
        losses = loss(got, beta=0.5).losses
        losses.sum().backward()
        res.append((got.policy.detach(), losses.detach(), grads(model)))
    assert torch.allclose(res[0][0], res[1][0], atol=ATOL, rtol=0)
    assert torch.allclose(res[0][1], res[1][1], atol=ATOL, rtol=0)
    assert max_diff(res[0][2], res[1][2]) < ATOL


@pytest.mark.parametrize("mode", MODES)
def test_kto_with_its_mismatched_pairs_equals_the_padded_path(tok, mode):
    model = tiny_llama(len(tok), seed=6)
    ref = tiny_llama(len(tok), seed=7)
    ex = kto_examples(tok)
    padded, packed = collate(ex, 0), pack_examples(ex, 0, mode=mode)
    assert packed.kl is not None and torch.equal(packed.label, padded.label)
    loss = get_align_loss("kto")
    res = []
    for batch in (padded, packed):
        model.zero_grad(set_to_none=True)
        got = lp.response_logps(model, batch, reference=ref)
        losses = loss(got, beta=0.1).losses
        losses.sum().backward()
        res.append((got, losses.detach(), grads(model)))
    for field in ("policy", "reference", "kl_policy", "kl_reference"):
        assert torch.allclose(getattr(res[0][0], field).detach(),
                              getattr(res[1][0], field).detach(), atol=ATOL, rtol=0), field
    assert torch.allclose(res[0][1], res[1][1], atol=ATOL, rtol=0)
    assert max_diff(res[0][2], res[1][2]) < ATOL


def test_both_batches_move_every_tensor_and_the_kto_pairs(tok):
    """AlignBatch and PackedBatch share batch_size and to() (DeviceBatch): every tensor
    moves, a packed batch's KTO pairs (a nested PackedBatch) too, the rest is kept."""
    ex = kto_examples(tok)
    for batch in (collate(ex, 0), pack_examples(ex, 0, mode="prefix")):
        moved = batch.to("meta")
        assert moved.batch_size == batch.batch_size == 3
        for f in dataclasses.fields(batch):
            old, new = getattr(batch, f.name), getattr(moved, f.name)
            if isinstance(old, torch.Tensor):
                assert new.is_meta and new.shape == old.shape, f.name
            elif f.name != "kl":
                assert new == old, f.name
    packed = pack_examples(ex, 0, mode="pack").to("meta")
    assert packed.kl is not None and packed.kl.input_ids.is_meta and packed.kl.where.is_meta


@pytest.mark.parametrize("mode", MODES)
def test_token_kl_and_chunking_equal_the_padded_path(tok, mode):
    """TDPO's per-token KL (both models' distributions at the shared positions), with the
    output layer in chunks of 5 tokens."""
    model, ref = tiny_llama(len(tok), seed=8), tiny_llama(len(tok), seed=9)
    ex = pair_examples(tok)
    a = lp.response_logps(model, collate(ex, 0), reference=ref, token_kl=True, chunk_size=5)
    b = lp.response_logps(model, pack_examples(ex, 0, mode=mode), reference=ref,
                          token_kl=True, chunk_size=5)
    for field in ("policy", "reference", "token_kl"):
        assert torch.allclose(getattr(a, field).detach(), getattr(b, field).detach(),
                              atol=ATOL, rtol=0), field


def test_the_full_logits_fallback_takes_packed_batches_too(tok):
    """A model whose split head disagrees with its forward scores through its logits."""
    model = tiny_llama(len(tok), seed=10)
    lp._CHECKED[model] = False  # as if the split check had failed
    ex = pair_examples(tok)
    a = lp.response_logps(model, collate(ex, 0)).policy
    b = lp.response_logps(model, pack_examples(ex, 0, mode="prefix")).policy
    assert torch.allclose(a.detach(), b.detach(), atol=ATOL, rtol=0)


def test_a_model_that_ignores_the_mask_is_not_packed(tok):
    class NoMask(transformers.LlamaForCausalLM):
        def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kw):
            return super().forward(input_ids=input_ids, **kw)

    base = tiny_llama(len(tok), seed=11)
    model = NoMask(base.config)
    model.load_state_dict(base.state_dict())
    assert not packing_supported(model)
    assert resolve_packing("auto", model) == "none"
    with pytest.raises(ValueError, match="packing='none'"):
        resolve_packing("prefix", model)
    assert resolve_packing("auto", base) == "prefix"


# -- the trainer -----------------------------------------------------------------------------------
def test_trainer_weights_equal_with_every_layout(tmp_path, tok):
    """Three DPO steps of two prompts with each layout: the same losses and weights."""
    data = AlignmentData("pairwise", [f"Q: help with {t}?" for t in
                                      ("tea", "rain", "maths", "a long topic", "chess", "x")],
                         [[" Yes, gladly.", " No."], [" Sure!", " I will not help."]] * 3)
    tokens = tokenize_alignment(data, tok, max_length=48)
    out = {}
    for mode in ("none", "pack", "prefix"):
        model = tiny_llama(len(tok), seed=12)
        cfg = AlignConfig(learning_rate=1e-3, batch_size=2, log_every=1, max_steps=3,
                          shuffle=False, packing=mode)
        res = align(model, tokens, config=cfg, output_dir=tmp_path / mode, progress=False)
        rows = [r for r in res.history if r["kind"] == "train"]
        out[mode] = ([r["loss"] for r in rows], {k: v.clone() for k, v in
                                                   model.state_dict().items()})
    for mode in MODES:
        assert out[mode][0] == pytest.approx(out["none"][0], abs=1e-6)
        for k, v in out["none"][1].items():
            assert torch.allclose(out[mode][1][k], v, atol=1e-5, rtol=0), (mode, k)
    with pytest.raises(ValueError, match="packing must be one of"):
        AlignConfig(packing="tree")


@pytest.mark.parametrize("live", [False, True])
def test_kto_trainer_steps_equal_with_every_layout(tmp_path, tok, monkeypatch, live):
    """KTO with its step pass (the KL estimate over the step's mismatched pairs): three
    steps of two prompts with each layout give the same losses (which carry the estimate)
    and weights as padded rows -- the reference cached, or run live. The packed runs never
    pad a batch (the trainer's collate is not called), so the step pass is packed too."""
    from prefkit.align import trainer

    data = AlignmentData("unpaired", [f"Q: is {t} nice?" for t in
                                      ("tea", "rain", "maths", "a long topic here", "chess", "x")],
                         [[" Yes, very."], [" No."], [" Sure!"], [" Not at all, sorry."],
                          [" yes"], [" It is."]], labels=[True, False, True, False, True, True])
    tokens = add_kl_completions(tokenize_alignment(data, tok, max_length=48), 2)
    padded = trainer.collate
    out = {}
    for mode in ("none", "pack", "prefix"):
        def guarded(*args, _mode=mode, **kwargs):
            assert _mode == "none", f"packing={_mode!r} padded a batch"
            return padded(*args, **kwargs)

        monkeypatch.setattr(trainer, "collate", guarded)
        model = tiny_llama(len(tok), seed=14)
        cfg = AlignConfig(loss="kto", learning_rate=1e-3, batch_size=2, eval_batch_size=2,
                          log_every=1, max_steps=3, shuffle=False, packing=mode,
                          precompute_reference=not live)
        res = align(model, tokens, config=cfg, output_dir=tmp_path / mode, progress=False,
                    reference_model=tiny_llama(len(tok), seed=15) if live else None)
        rows = [r for r in res.history if r["kind"] == "train"]
        out[mode] = ([r["loss"] for r in rows], [r["grad_norm"] for r in rows],
                     {k: v.clone() for k, v in model.state_dict().items()})
    for mode in MODES:
        assert out[mode][0] == pytest.approx(out["none"][0], abs=1e-6)
        assert out[mode][1] == pytest.approx(out["none"][1], rel=1e-5)
        for k, v in out["none"][2].items():
            assert torch.allclose(out[mode][2][k], v, atol=1e-5, rtol=0), (mode, k)


def test_cli_packing_option(tmp_path, tok):
    """``prefkit align --packing`` reaches the config; a bad value is named as the flag."""
    from typer.testing import CliRunner

    from prefkit.cli.main import app

    model_dir = tmp_path / "m"
    tiny_llama(len(tok), seed=13).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": " yes", "rejected": " no"})
                            + "\n" for i in range(4)))
    runner = CliRunner()
    bad = runner.invoke(app, ["align", "-m", str(model_dir), "-d", str(data), "-o",
                              str(tmp_path / "bad"), "--packing", "tree"])
    assert bad.exit_code != 0 and "--packing must be one of" in bad.output
    ok = runner.invoke(app, ["align", "-m", str(model_dir), "-d", str(data), "-o",
                             str(tmp_path / "run"), "--packing", "pack", "--max-steps", "1",
                             "--batch-size", "2", "--json"])
    assert ok.exit_code == 0, ok.output
    saved = json.loads((tmp_path / "run" / "prefkit_align.json").read_text())
    assert saved["config"]["packing"] == "pack"


@pytest.mark.parametrize("mode", [None, *MODES])
def test_a_complete_batch_hands_the_losses_no_valid_mask(tok, mode):
    """Every response valid is known when the batch is built (on the host): the log-prob
    table then carries valid=None, so a pairwise loss's completeness check reads nothing back
    from the device (on a GPU, one sync per micro-batch). A listwise batch with a padding
    response keeps its mask, and the losses equal those with the mask given explicitly."""
    model = tiny_llama(len(tok), seed=3)
    make = (lambda ex: collate(ex, 0)) if mode is None else (
        lambda ex: pack_examples(ex, 0, mode=mode))
    pairs = make(pair_examples(tok))
    assert pairs.complete and bool(pairs.valid.all())
    with torch.no_grad():
        got = lp.response_logps(model, pairs, reference=model)
        assert got.valid is None
        masked = dataclasses.replace(got, valid=pairs.valid)
        loss = get_align_loss("dpo")
        assert torch.equal(loss(got, beta=0.1).losses, loss(masked, beta=0.1).losses)
        ranked = make(listwise_examples(tok))
        assert not ranked.complete
        got = lp.response_logps(model, ranked, reference=model)
        assert torch.equal(got.valid, ranked.valid)
