"""The alignment trainer (prefkit.align.trainer) and the reference cache
(prefkit.align.reference) on the tiny offline Llama of conftest.py.

DPO's step-0 loss is ln 2 (policy == reference), the parameters change and the loss goes
down; 4 micro-batches of 1 make the same update as 1 of 4; a resumed run equals an
uninterrupted one bit for bit; with LoRA only the adapter moves and the reference is the
base model (one model object); KTO, listwise and token-level DPO runs go through with
their step-0 values, KTO with one detached KL estimate per step; rows that reading or
tokenizing left out are warned about and recorded; the folder loads back with
AutoModelForCausalLM; the reference cache is reused and recomputed when the model or the
data change; bad input fails clearly.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download

import copy  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prefkit.align.data import AlignmentData, collate, tokenize_alignment  # noqa: E402
from prefkit.align import reference  # noqa: E402
from prefkit.align.logprobs import response_logps  # noqa: E402
from prefkit.align.reference import cached_reference_logps, model_fingerprint  # noqa: E402
from prefkit.align.tiny import tiny_llama  # noqa: E402
from prefkit.align.trainer import AlignConfig, align  # noqa: E402

LN2 = math.log(2.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

FAST = dict(learning_rate=5e-3, batch_size=2, log_every=1, max_length=48, eval_batch_size=8)


def pairs(n: int = 8) -> AlignmentData:
    """Learnable pairs: the chosen answer agrees ("yes ..."), the rejected one refuses."""
    topics = ["tea", "rain", "maths", "a cat", "python", "bread", "the sea", "chess"]
    return AlignmentData("pairwise", [f"Q: help with {topics[i % 8]}?" for i in range(n)],
                         [[" yes, gladly", " no"] for _ in range(n)])


@pytest.fixture
def data(tokenizer):
    return tokenize_alignment(pairs(), tokenizer, max_length=48)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_rows(result) -> list[dict]:
    return [r for r in result.history if r["kind"] == "train"]


# -- DPO: ln 2, learning, metrics, the folder ------------------------------------------------------
def test_dpo_starts_at_ln2_learns_and_writes_a_model_folder(tmp_path, tokenizer, tiny_model,
                                                            data):
    before = weights(tiny_model)
    cfg = AlignConfig(loss="dpo", loss_kwargs={"beta": 0.5}, max_steps=4, **FAST)
    res = align(tiny_model, data, config=cfg, output_dir=tmp_path / "run", tokenizer=tokenizer,
                progress=False, validation=data)
    rows = train_rows(res)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and res.finished
    assert rows[0]["loss"] == pytest.approx(LN2, abs=1e-6)  # policy == reference
    assert abs(rows[0]["rewards/chosen"]) < 1e-6 and abs(rows[0]["kl"]) < 1e-6
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.05  # it learns
    assert rows[-1]["margins"] > 0 and rows[-1]["accuracy"] == 1.0
    assert rows[-1]["margins"] == pytest.approx(
        rows[-1]["rewards/chosen"] - rows[-1]["rewards/rejected"], abs=1e-6)
    assert rows[0]["lr"] == pytest.approx(5e-3 * 3 / 4) and rows[-1]["lr"] == 0.0
    assert all(r["grad_norm"] > 0 and r["elapsed_s"] >= 0 for r in rows)
    after = weights(tiny_model)
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every weight moved
    val = res.validation
    assert val["step"] == 4 and val["val_accuracy"] == 1.0 and val["val_loss"] < LN2

    out = tmp_path / "run"
    on_disk = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert on_disk == res.history
    info = json.loads((out / "prefkit_align.json").read_text())
    assert info["config"]["loss"] == "dpo" and info["summary"]["step"] == 4
    assert info["reference"]["model"] == model_fingerprint(tiny_llama(len(tokenizer)))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    batch = collate(data.examples[:3], data.pad_token_id)
    assert torch.equal(response_logps(loaded, batch).policy.detach(),
                       response_logps(tiny_model.eval(), batch).policy.detach())
    assert transformers.AutoTokenizer.from_pretrained(out)("ab")["input_ids"] == \
        tokenizer("ab")["input_ids"]


def test_gradient_accumulation_4x1_equals_1x4(tmp_path, tokenizer, data):
    """Same prompts, same step: equal gradients (their norm) and equal weights after AdamW.
    (AdamW's first step is about lr * sign(g), so float noise in a near-zero gradient
    moves a weight by up to ~lr; lr = 1e-3 keeps that under the 1e-6 checked.)"""
    models, rows = [], []
    for b, a in ((4, 1), (1, 4)):
        model = tiny_llama(len(tokenizer))
        cfg = AlignConfig(**{**FAST, "batch_size": b, "learning_rate": 1e-3}, grad_accum=a,
                          max_steps=1, shuffle=False)
        res = align(model, data, config=cfg, output_dir=tmp_path / f"{b}x{a}", progress=False)
        models.append(weights(model))
        rows.append(train_rows(res)[0])
    assert rows[0]["grad_norm"] == pytest.approx(rows[1]["grad_norm"], rel=1e-6)
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], abs=1e-6)
    init = weights(tiny_llama(len(tokenizer)))
    for k in init:
        assert not torch.equal(models[0][k], init[k])
        assert torch.allclose(models[0][k], models[1][k], atol=1e-6, rtol=0), k


def test_resume_equals_uninterrupted_bit_for_bit(tmp_path, tokenizer, data):
    """Shuffled, 4 steps per epoch, 6 steps: the interruption at 3 and the epoch edge."""
    cfg = AlignConfig(**FAST, max_steps=6, checkpoint_every=2)
    whole = tiny_llama(len(tokenizer))
    res = align(whole, data, config=cfg, output_dir=tmp_path / "whole", progress=False)
    part = tiny_llama(len(tokenizer))
    first = align(part, data, config=cfg, output_dir=tmp_path / "part", progress=False,
                  stop_after=3)
    assert not first.finished and first.step == 3
    again = tiny_llama(len(tokenizer))  # a fresh process: initial weights, then the checkpoint
    second = align(again, data, config=cfg, output_dir=tmp_path / "part", progress=False,
                   resume=True)
    assert second.finished and second.step == 6 and second.reference_cached
    assert [r["loss"] for r in train_rows(second)] == [r["loss"] for r in train_rows(res)]
    w1, w2 = weights(whole), weights(again)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    with pytest.raises(ValueError, match="different config"):
        align(tiny_llama(len(tokenizer)), data, config=AlignConfig(**FAST, max_steps=7),
              output_dir=tmp_path / "part", progress=False, resume=True)



def test_a_checkpoint_written_before_packing_existed_resumes(tmp_path, tokenizer, data):
    """A checkpoint (and run marker) whose config has no ``packing`` -- written before the
    field was added -- resumes under the default config (the missing field counts as its
    default, prefkit.runs.config_diff) and ends where an uninterrupted run ends; resuming it
    with a non-default ``packing`` is refused as a different config, naming the field."""
    cfg = AlignConfig(**FAST, max_steps=4, checkpoint_every=2, packing="auto")
    whole = tiny_llama(len(tokenizer))
    res = align(whole, data, config=cfg, output_dir=tmp_path / "whole", progress=False)
    first = align(tiny_llama(len(tokenizer)), data, config=cfg, output_dir=tmp_path / "old",
                  progress=False, stop_after=2)
    assert not first.finished
    ck_path = tmp_path / "old" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    assert ck["config"].pop("packing") == "auto"  # as an older prefkit wrote it
    torch.save(ck, ck_path)
    marker = tmp_path / "old" / "prefkit_run.json"
    saved = json.loads(marker.read_text())
    del saved["config"]["packing"]
    marker.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"different config \(fields \['packing'\]\)"):
        align(tiny_llama(len(tokenizer)), data, config=dataclasses.replace(cfg, packing="none"),
              output_dir=tmp_path / "old", progress=False, resume=True)
    again = tiny_llama(len(tokenizer))
    second = align(again, data, config=AlignConfig(**FAST, max_steps=4, checkpoint_every=2),
                   output_dir=tmp_path / "old", progress=False, resume=True)
    assert second.finished and second.step == 4
    assert [r["loss"] for r in train_rows(second)] == [r["loss"] for r in train_rows(res)]
    w1, w2 = weights(whole), weights(again)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)

# -- LoRA ------------------------------------------------------------------------------------------
def test_lora_trains_only_the_adapter_against_the_base_model(tmp_path, tokenizer, data):
    peft = pytest.importorskip("peft")
    base = tiny_llama(len(tokenizer))
    base_batch = collate(data.examples, data.pad_token_id)
    want_ref = response_logps(base, base_batch).policy.detach()  # the base model's log-probs
    base_weights, base_fp = weights(base), model_fingerprint(base)
    del base
    gc.collect()
    model = tiny_llama(len(tokenizer))
    cfg = AlignConfig(**{**FAST, "learning_rate": 5e-2}, max_steps=2, lora_r=4,
                      lora_alpha=8)
    res = align(model, data, config=cfg, output_dir=tmp_path / "lora", tokenizer=tokenizer,
                progress=False)
    assert train_rows(res)[0]["loss"] == pytest.approx(LN2, abs=1e-6)  # fresh adapter: base
    assert train_rows(res)[-1]["loss"] < LN2
    gc.collect()
    n_llamas = sum(type(o) is transformers.LlamaForCausalLM for o in gc.get_objects())
    assert n_llamas == 1  # the reference was the same model, adapter disabled
    ref = torch.load(tmp_path / "lora" / "reference_logps.pt", weights_only=True)
    assert ref["key"]["model"] == base_fp  # fingerprinted as the base model
    assert torch.allclose(ref["logps"], want_ref, atol=1e-5, rtol=0)
    after = {k.replace(".base_layer", ""): v for k, v in weights(model).items()
             if "lora_" not in k}  # the base weights inside the peft model did not move
    assert after.keys() == base_weights.keys()
    assert all(torch.equal(after[k], v) for k, v in base_weights.items())
    out = tmp_path / "lora"
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    loaded = peft.PeftModel.from_pretrained(tiny_llama(len(tokenizer)), out)
    trained = response_logps(model.eval(), base_batch).policy.detach()  # LoRA is injected
    assert torch.allclose(response_logps(loaded, base_batch).policy.detach(), trained,
                          atol=1e-6, rtol=0)
    assert float((trained - want_ref).abs().max()) > 1e-3


# -- other kinds of data and losses ----------------------------------------------------------------
def test_kto_and_listwise_runs_start_where_they_must(tmp_path, tokenizer):
    unpaired = AlignmentData("unpaired", [f"Q{i}: ok?" for i in range(6)],
                             [[" yes"] if i % 2 else [" no"] for i in range(6)],
                             labels=[bool(i % 2) for i in range(6)])
    res = align(tiny_llama(len(tokenizer)), tokenize_alignment(unpaired, tokenizer),
                config=AlignConfig(loss="kto", **FAST, max_steps=2, shuffle=False),
                output_dir=tmp_path / "kto", progress=False)
    first = train_rows(res)[0]
    assert first["loss"] == pytest.approx(0.5, abs=1e-6)  # 1 - sigmoid(0)
    assert first["accuracy"] is None and first["rewards/rejected"] == pytest.approx(0, abs=1e-6)
    ranked = AlignmentData("listwise", [f"Rank {i}:" for i in range(4)],
                           [[" best", " fine", " bad"], [" a", " b"], [" x", " y", " z"],
                            [" 1", " 2"]])
    res = align(tiny_llama(len(tokenizer)), tokenize_alignment(ranked, tokenizer),
                config=AlignConfig(loss="listwise", **FAST, max_steps=2, shuffle=False),
                output_dir=tmp_path / "list", progress=False)
    # step 1 = examples 0 and 1: -log PL with equal scores = log 3! and log 2!
    assert train_rows(res)[0]["loss"] == pytest.approx((math.log(6) + math.log(2)) / 2,
                                                       abs=1e-6)
    assert math.isfinite(train_rows(res)[-1]["loss"])


def test_kto_gets_one_detached_kl_estimate_per_step(tmp_path, tokenizer, monkeypatch):
    """The trainer passes KTO's reference point as ``kl_estimate``: one 0-dim, detached
    tensor shared by the micro-batches of a step, equal to the mean of log pi_theta -
    log pi_ref over the mismatched pairs of *all* the step's prompts (checked against the
    policy after step 1 and the initial model), and no per-row kl_policy/kl_reference. Each
    prompt's mismatched completion is its KL partner as TRL 1.16 fixes it (completions
    rotated by one within data-order chunks of ``batch_size``; see test_data's
    test_kl_partners_equal_trl_kto), not a neighbour in the micro-batch or step."""
    from prefkit.align import losses as align_losses

    real = align_losses.get_align_loss("kto")
    calls: list[tuple] = []

    def spy(logps, **hyper):
        calls.append((hyper["kl_estimate"], logps.kl_policy, logps.kl_reference,
                      logps.batch_size))
        return real.fn(logps, **hyper)

    monkeypatch.setitem(align_losses.ALIGN_LOSSES, "kto", dataclasses.replace(real, fn=spy))
    unpaired = AlignmentData("unpaired", [f"Q{i}: is {i} odd?" for i in range(8)],
                             [[f" yes {i}"] if i % 2 else [f" no way {i}"] for i in range(8)],
                             labels=[bool(i % 2) for i in range(8)])
    data = tokenize_alignment(unpaired, tokenizer, max_length=48)
    cfg = AlignConfig(loss="kto", **FAST, grad_accum=2, max_steps=2, shuffle=False)
    model = tiny_llama(len(tokenizer))
    align(model, data, config=cfg, output_dir=tmp_path / "kto", progress=False, stop_after=1)
    # step 2 takes prompts 4..7 (two micro-batches of 2): its reference point, by hand, with
    # TRL's KL partners for batch_size 2 (chunks (4, 5), (6, 7): 4 <- 5, 5 <- 4, 6 <- 7,
    # 7 <- 6; prefkit paired 5 <- 6 and 7 <- 0 before, in data order over the whole set)
    ex = data.examples
    pairs_ = [dataclasses.replace(ex[i], responses=[ex[j].responses[0]], label=None)
              for i, j in [(4, 5), (5, 4), (6, 7), (7, 6)]]
    batch = collate(pairs_, data.pad_token_id)
    with torch.no_grad():
        want = float((response_logps(model, batch).policy
                      - response_logps(tiny_llama(len(tokenizer)), batch).policy).mean())
    align(tiny_llama(len(tokenizer)), data, config=cfg, output_dir=tmp_path / "kto",
          progress=False, resume=True)
    assert len(calls) == 4 and [c[3] for c in calls] == [2, 2, 2, 2]
    for kl, kl_policy, kl_reference, _ in calls:
        assert isinstance(kl, torch.Tensor) and kl.shape == () and not kl.requires_grad
        assert kl_policy is None and kl_reference is None
    assert calls[0][0] is calls[1][0] and calls[2][0] is calls[3][0]  # one per step
    assert abs(float(calls[0][0])) < 1e-5  # step 1: the policy is the reference
    assert abs(want) > 1e-4  # step 1 moved the policy: the estimate is not trivially 0
    assert float(calls[2][0]) == pytest.approx(want, abs=1e-5)


def test_kto_with_a_fixed_kl_estimate_scores_no_mismatched_pairs(tmp_path, tokenizer):
    """A fixed ``kl_estimate`` scores no pairs (and allows batch_size 1, which KTO's KL pairs
    refuse as TRL does: a one-row chunk pairs a prompt with its own completion)."""
    unpaired = AlignmentData("unpaired", [f"Q{i}: ok?" for i in range(4)],
                             [[" yes"] if i % 2 else [" no"] for i in range(4)],
                             labels=[bool(i % 2) for i in range(4)])
    one = AlignConfig(loss="kto", **{**FAST, "batch_size": 1}, max_steps=1)
    with pytest.raises(ValueError, match="batch_size 1 would pair it with its own"):
        align(tiny_llama(len(tokenizer)), tokenize_alignment(unpaired, tokenizer), config=one,
              output_dir=tmp_path / "kto1", progress=False)
    cfg = AlignConfig(loss="kto", loss_kwargs={"kl_estimate": 0.0}, **{**FAST, "batch_size": 1},
                      max_steps=1)
    res = align(tiny_llama(len(tokenizer)), tokenize_alignment(unpaired, tokenizer),
                config=cfg, output_dir=tmp_path / "kto0", progress=False)
    assert train_rows(res)[0]["loss"] == pytest.approx(0.5, abs=1e-6)
    ref = torch.load(tmp_path / "kto0" / "reference_logps.pt", weights_only=True)
    assert ref["kl"] is None and ref["key"]["kl_pairs"] is False  # no KL pairs scored


def test_rows_left_out_or_cut_are_warned_about_and_recorded(tmp_path, tokenizer):
    """align() reads and tokenizes: rows the reader skipped and rows tokenization dropped
    or cut give a UserWarning (counts and the first rows) and land in prefkit_align.json;
    already tokenized data is the caller's to report (counted, no warning)."""
    from prefkit.data.errors import InvalidRow

    records = pairs(6)
    long_prompt = "Q: " + "why? " * 12  # ~60 characters: longer than max_length=48
    records = AlignmentData(
        "pairwise", [long_prompt] + records.prompts[1:],
        [records.responses[0], [" yes, " + "gladly " * 10, " no"]] + records.responses[2:],
        source_lines=list(range(2, 8)), source="prefs.jsonl",
        skipped=(InvalidRow("prefs.jsonl", 9, "chosen", None, "missing value", "add it"),),
        n_read=7)
    cfg = AlignConfig(**FAST, max_steps=1)
    with pytest.warns(UserWarning) as got:
        align(tiny_llama(len(tokenizer)), records, config=cfg, output_dir=tmp_path / "a",
              tokenizer=tokenizer, progress=False)
    said = [str(w.message) for w in got if str(w.message).startswith("data:")]
    assert len(said) == 2, said
    assert "skipped 1 invalid row:" in said[0] and "line 9" in said[0]
    assert "5 pairwise examples (1 dropped; 1 responses cut)" in said[1]
    assert "line 2: the prompt alone has" in said[1] and "line 3: response 0 cut" in said[1]
    info = json.loads((tmp_path / "a" / "prefkit_align.json").read_text())
    counts = info["inputs"]["data"]
    assert counts["skipped_rows"] == 1 and counts["dropped"] == 1
    assert counts["response_cut"] == 1 and counts["prompt_cut"] == 0
    assert counts["examples"] == 5 and counts["tokenized_by_align"] is True
    assert info["inputs"]["validation"] is None

    tokens = tokenize_alignment(records, tokenizer, max_length=48)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        align(tiny_llama(len(tokenizer)), tokens, config=cfg, output_dir=tmp_path / "b",
              progress=False)
    assert not [w for w in caught if str(w.message).startswith("data:")]
    counts = json.loads((tmp_path / "b" / "prefkit_align.json").read_text())["inputs"]["data"]
    assert counts["dropped"] == 1 and counts["skipped_rows"] is None
    assert counts["tokenized_by_align"] is False


def test_tdpo_runs_the_reference_live_from_the_model_folder(tmp_path, tiny_model_dir, data):
    cfg = AlignConfig(loss="tdpo2", **FAST, max_steps=2, sft_weight=0.5, shuffle=False)
    res = align(str(tiny_model_dir), data, config=cfg, output_dir=tmp_path / "tdpo",
                progress=False)
    first = train_rows(res)[0]
    assert abs(first["kl"]) < 1e-6  # the token KL of the policy with itself at step 0
    start = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    logps = response_logps(start, collate(data.examples[:2], data.pad_token_id))
    nll = float((-logps.policy[:, 0] / logps.lengths[:, 0]).mean().detach())  # the SFT term
    assert first["loss"] == pytest.approx(LN2 + 0.5 * nll, abs=1e-5)
    assert train_rows(res)[-1]["kl"] > 0
    assert not (tmp_path / "tdpo" / "reference_logps.pt").exists()  # live: nothing cached


def test_bf16_autocast_keeps_float32_weights(tmp_path, tokenizer, tiny_model, data):
    res = align(tiny_model, data, config=AlignConfig(**FAST, max_steps=2, precision="bf16"),
                output_dir=tmp_path / "bf16", progress=False)
    assert train_rows(res)[0]["loss"] == pytest.approx(LN2, abs=1e-3)  # bf16 logits
    assert all(p.dtype == torch.float32 for p in tiny_model.parameters())
    ref = torch.load(tmp_path / "bf16" / "reference_logps.pt", weights_only=True)
    assert ref["key"]["precision"] == "bf16"


# -- the reference cache ---------------------------------------------------------------------------
def test_reference_cache_is_reused_and_recomputed_on_change(tmp_path, monkeypatch, tiny_model,
                                                            data):
    path = tmp_path / "ref.pt"
    first = cached_reference_logps(tiny_model, data.examples, path, pad_token_id=0)
    assert not first.loaded and first.logps.shape == (8, 2)
    batch = collate(data.examples, 0)
    assert torch.allclose(first.logps, response_logps(tiny_model, batch).policy.detach(),
                          atol=1e-5, rtol=0)
    again = cached_reference_logps(tiny_model, data.examples, path, pad_token_id=0)
    assert again.loaded and torch.equal(again.logps, first.logps)
    fewer = cached_reference_logps(tiny_model, data.examples[:5], path, pad_token_id=0)
    assert not fewer.loaded and fewer.logps.shape == (5, 2)  # other data: recomputed
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.lm_head.weight[3, 5] += 1e-3  # one weight of the model changed
    changed = cached_reference_logps(other, data.examples[:5], path, pad_token_id=0)
    assert not changed.loaded
    monkeypatch.setattr(reference, "_FULL_HASH_NUMEL", 64)  # the sampled digest of big weights
    sampled = model_fingerprint(tiny_model)
    assert sampled != model_fingerprint(other) and sampled == model_fingerprint(
        copy.deepcopy(tiny_model))
    bf16 = cached_reference_logps(other, data.examples[:5], path, pad_token_id=0,
                                  precision="bf16")
    assert not bf16.loaded and bf16.key["precision"] == "bf16"


# -- bad input -------------------------------------------------------------------------------------
def test_bad_input_fails_clearly(tmp_path, tokenizer, tiny_model, data):
    with pytest.raises(FileNotFoundError, match="cannot load a causal LM"):
        align(str(tmp_path / "no-such-model"), data, output_dir=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="needs the reference model at every step"):
        align(tiny_model, data, config=AlignConfig(precompute_reference=False),
              output_dir=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="takes listwise data but data is pairwise"):
        align(tiny_model, data, config=AlignConfig(loss="listwise"),
              output_dir=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        AlignConfig(loss="dpo", loss_kwargs={"betta": 0.1})
    with pytest.raises(ValueError, match="unknown alignment loss"):
        AlignConfig(loss="dpoo")
    align(tiny_model, data, config=AlignConfig(**FAST, max_steps=1),
          output_dir=tmp_path / "y", progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        align(tiny_model, data, config=AlignConfig(**FAST, max_steps=1),
              output_dir=tmp_path / "y", progress=False)
