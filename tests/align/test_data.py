"""The alignment data layer: reading (pairwise, unpaired, listwise, Step-DPO), tokenization
(the same ids as TRL 1.16's DPOTrainer / KTOTrainer), masks, collation and the report of
every truncated or dropped row."""

from __future__ import annotations

import dataclasses
import json
import string
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from prefkit.align.data import (  # noqa: E402
    AlignExample,
    AlignmentData,
    add_kl_completions,
    collate,
    iter_batches,
    kl_partners,
    read_alignment_data,
    split_implicit_prompt,
    step_dpo_pair,
    tokenize_alignment,
    unpair,
)
from prefkit.data.errors import InvalidInputError  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def bpe_tokenizer() -> Any:
    """A tokenizer WITHOUT automatic BOS (Qwen-like: ChatML template, EOS ``<|im_end|>``) whose
    BPE merges ``ab`` and `` b`` join characters across a prompt/response boundary."""
    from tokenizers import Tokenizer, decoders, models

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {s: i for i, s in enumerate(special)}
    for ch in sorted(set(string.printable) - set("\r\x0b\x0c")):
        vocab.setdefault(ch, len(vocab))
    merges = [("a", "b"), (" ", "b")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(special)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


PAIRS = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "xa", "chosen": "b!", "rejected": "c?"},
    {"prompt": "<s>Q: 2+2?", "chosen": " 4", "rejected": " 5</s>"},
]
CHATS = [
    {"prompt": [user("Hi")], "chosen": [assistant("Hello!")], "rejected": [assistant("Go.")]},
    {"prompt": [{"role": "system", "content": "Be brief."}, user("2+2?"), assistant("4"),
                user("and 3+3?")],
     "chosen": [assistant("6")], "rejected": [assistant("7, I think")]},
]


# -- reading ------------------------------------------------------------------------------
def test_reads_trl_standard_and_conversational_pairs(tmp_path: Path) -> None:
    d = read_alignment_data(write_jsonl(tmp_path / "p.jsonl", PAIRS))
    assert (d.kind, d.format, len(d)) == ("pairwise", "trl", 3)
    assert d.prompts[0] == "The sky is" and d.responses[0] == [" blue.", " green."]
    assert d.source_lines.tolist() == [1, 2, 3]
    c = read_alignment_data(write_jsonl(tmp_path / "c.jsonl", CHATS))
    assert c.is_chat(1) and c.prompts[1][-1] == user("and 3+3?")  # earlier turns in prompt
    assert c.prompts[1][2] == assistant("4") and c.responses[1] == ["6", "7, I think"]


def test_implicit_prompt_is_the_shared_start(tmp_path: Path) -> None:
    rows = [{"chosen": "The sky is blue.", "rejected": "The sky is green."}]
    d = read_alignment_data(write_jsonl(tmp_path / "i.jsonl", rows))
    assert d.prompts == ["The sky is"] and d.responses == [[" blue.", " green."]]
    assert split_implicit_prompt("abc", "abcd") == ("ab", "c", "cd")  # both keep some text


def test_hh_transcripts_as_text_or_chat(tmp_path: Path) -> None:
    rows = [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello there", "rejected":
             "\n\nHuman: Hi\n\nAssistant: Go away"}]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    d = read_alignment_data(path)
    assert d.format == "hh_rlhf" and d.prompts == ["\n\nHuman: Hi\n\nAssistant:"]
    assert d.responses == [[" Hello there", " Go away"]]
    assert read_alignment_data(path, chat=True).prompts == [[user("Hi")]]


def test_reads_unpaired_standard_and_conversational(tmp_path: Path) -> None:
    rows = [{"prompt": "2+2=", "completion": "4", "label": True},
            {"prompt": "2+2=", "completion": "5", "label": 0},
            {"prompt": [user("Hi")], "completion": [assistant("Hello")], "label": "true"}]
    d = read_alignment_data(write_jsonl(tmp_path / "u.jsonl", rows))
    assert (d.kind, d.format) == ("unpaired", "unpaired")
    assert d.labels.tolist() == [True, False, True] and d.responses[2] == ["Hello"]
    assert d.prompts[2] == [user("Hi")]


def test_pairs_convert_to_unpaired_and_listwise(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", PAIRS[:2])
    u = read_alignment_data(path, kind="unpaired")
    assert u.responses == [[" blue."], ["b!"], [" green."], ["c?"]]
    assert u.labels.tolist() == [True, True, False, False]
    assert u.source_lines.tolist() == [1, 2, 1, 2]
    assert read_alignment_data(path, kind="listwise").kind == "listwise"
    lw = write_jsonl(tmp_path / "l.jsonl", [{"prompt": "q", "completions": ["a", "b", "c"]}])
    with pytest.raises(InvalidInputError, match="holds listwise data.*not pairwise"):
        read_alignment_data(lw, kind="pairwise")
    with pytest.raises(ValueError, match="needs pairwise"):
        unpair(read_alignment_data(lw))


def test_reads_listwise_ranks_scores_and_order(tmp_path: Path) -> None:
    rows = [{"prompt": "q1", "completions": ["b", "a", "c"], "ranks": [2, 1, 3]},
            {"prompt": "q2", "completions": ["x", "y"], "ranks": [0, 5]},
            {"prompt": [user("q3")], "completions": [[assistant("lo")], [assistant("hi")]],
             "ranks": [9, 1]}]
    d = read_alignment_data(write_jsonl(tmp_path / "r.jsonl", rows))
    assert d.kind == "listwise" and d.num_responses.tolist() == [3, 2, 2]
    assert d.responses == [["a", "b", "c"], ["x", "y"], ["hi", "lo"]]
    s = read_alignment_data(write_jsonl(tmp_path / "s.jsonl", [
        {"prompt": "q", "responses": ["low", "high", "mid"], "scores": [0.1, 2.0, 1.0]}]))
    assert s.responses == [["high", "mid", "low"]]
    o = read_alignment_data(write_jsonl(tmp_path / "o.jsonl", [
        {"prompt": "q", "completions": ["best", "worst"]}]))
    assert o.responses == [["best", "worst"]]


def test_listwise_errors_name_file_line_field_and_fix(tmp_path: Path) -> None:
    rows = [{"prompt": "ok", "completions": ["a", "b"], "ranks": [1, 2]},
            {"prompt": "tie", "completions": ["a", "b", "c"], "ranks": [1, 2, 2]},
            {"prompt": "one", "completions": ["a"], "ranks": [1]},
            {"prompt": "short", "completions": ["a", "b"], "ranks": [1]},
            {"prompt": "dup", "completions": ["a", "a"], "ranks": [1, 2]}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InvalidInputError) as err:
        read_alignment_data(path)
    msg = str(err.value)
    assert "4 of 5 records are invalid, nothing was read" in msg
    assert "tied ranks: completions 1 and 2 both have 2 in field 'ranks' at " \
           f"{path} line 2; listwise rows need a strict order" in msg
    assert "at least 2 completions, got 1 in field 'completions'" in msg and "line 3" in msg
    assert "expected a list of 2 ranks (one per completion), got 1" in msg
    assert "completion 1 repeats completion 0 in field 'completions[1]'" in msg
    d = read_alignment_data(path, skip_invalid=True)
    assert len(d) == 1 and sorted({p.line for p in d.skipped}) == [2, 3, 4, 5]
    assert d.n_skipped == 4 and "skipped 4 invalid rows" in d.summary()


def test_unpaired_bad_label_is_reported_with_fix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "u.jsonl", [
        {"prompt": "p", "completion": "c", "label": "maybe"},
        {"prompt": "p", "completion": [assistant("x"), user("y")], "label": True}])
    with pytest.raises(InvalidInputError) as err:
        read_alignment_data(path)
    msg = str(err.value)
    assert f"unknown label 'maybe' in field 'label' at {path} line 1; label must be true " \
           "(desirable) or false (undesirable)" in msg
    assert "must be one assistant message" in msg and "line 2" in msg


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(InvalidInputError, match="cannot tell the format(.|\n)*listwise: "):
        read_alignment_data(path)
    with pytest.raises(InvalidInputError, match="no rows"):
        read_alignment_data(write_jsonl(tmp_path / "e.jsonl", []))


# -- Step-DPO -----------------------------------------------------------------------------
STEPS = ["Step 1: 2*3 = 6.", "Step 2: 6+1 = 7.", "Step 3: the answer is 7."]


def test_step_dpo_pair_by_hand() -> None:
    p = step_dpo_pair("Compute 2*3+1.", STEPS, 1, "Step 2: 6+1 = 8.")
    assert p.prompt + p.prefix == "Compute 2*3+1.\nStep 1: 2*3 = 6.\n"
    assert (p.chosen, p.rejected) == ("Step 2: 6+1 = 7.", "Step 2: 6+1 = 8.")
    first = step_dpo_pair("Q", STEPS, 0, "Step 1: 2*3 = 5.", prompt_separator=" ")
    assert first.prefix == " " and first.chosen == STEPS[0]
    chat = step_dpo_pair([user("Q")], STEPS, 2, "Step 3: the answer is 8.")
    assert chat.prefix == "Step 1: 2*3 = 6.\nStep 2: 6+1 = 7.\n"
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        step_dpo_pair("Q", STEPS, 3, "x")


def test_reads_step_dpo_rows_and_published_columns(tmp_path: Path, tokenizer: Any) -> None:
    rows = [{"prompt": "Compute 2*3+1.", "steps": STEPS, "wrong_step_index": 1,
             "rejected_step": "Step 2: 6+1 = 8."},
            {"prompt": [user("Compute 2*3+1.")], "steps": STEPS, "error_step": 2,
             "rejected_step": "Step 2: 6+1 = 8."}]
    d = read_alignment_data(write_jsonl(tmp_path / "s.jsonl", rows))
    assert (d.kind, d.format) == ("pairwise", "step_dpo")
    assert d.responses == [["Step 2: 6+1 = 7.", "Step 2: 6+1 = 8."]] * 2
    assert d.response_prefix == ["\nStep 1: 2*3 = 6.\n", "Step 1: 2*3 = 6.\n"]
    t = tokenize_alignment(d, tokenizer)
    text = tokenizer.decode(t[0].prompt_ids, skip_special_tokens=False)
    assert text == "<s>Compute 2*3+1.\nStep 1: 2*3 = 6.\n"
    chat = tokenizer.decode(t[1].prompt_ids, skip_special_tokens=False)
    assert chat == "<s><|user|>Compute 2*3+1.\n<|assistant|>Step 1: 2*3 = 6.\n"  # continues
    assert tokenizer.decode(t[1].responses[0]) == "Step 2: 6+1 = 7.</s>\n"
    published = [{"dataset": "MATH", "prompt": "Compute 2*3+1.",
                  "initial_reason_steps": "Let's think.\nStep 1: 2*3 = 6.\nStep 2:",
                  "chosen": " 6+1 = 7.", "rejected": " 6+1 = 8.", "full_chosen": "...",
                  "full_rejected": "...", "answer": "7"}]
    p = read_alignment_data(write_jsonl(tmp_path / "pub.jsonl", published))
    assert p.format == "step_dpo" and p.responses == [[" 6+1 = 7.", " 6+1 = 8."]]
    assert p.prompts[0] + p.response_prefix[0] == \
        "Compute 2*3+1.\nLet's think.\nStep 1: 2*3 = 6.\nStep 2:"


def test_step_dpo_errors(tmp_path: Path) -> None:
    rows = [{"prompt": "Q", "steps": STEPS, "wrong_step_index": 3, "rejected_step": "x"},
            {"prompt": "Q", "steps": STEPS, "wrong_step_index": 0, "error_step": 2,
             "rejected_step": "x"},
            {"prompt": "Q", "steps": STEPS, "error_step": 1, "rejected_step": STEPS[0]}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InvalidInputError) as err:
        read_alignment_data(path)
    msg = str(err.value)
    assert f"wrong_step_index 3 names none of its 3 steps in field 'wrong_step_index' at " \
           f"{path} line 1; wrong_step_index is the 0-based position" in msg
    assert "error_step 2 (1-based) disagrees with wrong_step_index 0 (0-based)" in msg
    assert "the rejected step equals the correct step steps[0]" in msg and "line 3" in msg
    nocol = write_jsonl(tmp_path / "n.jsonl", [{"prompt": "Q", "steps": STEPS,
                                                "rejected_step": "x"}])
    with pytest.raises(InvalidInputError, match="missing column 'wrong_step_index'"):
        read_alignment_data(nocol)


# -- tokenization: the same ids as TRL ----------------------------------------------------
@pytest.fixture(scope="module")
def trl_prepare() -> Any:
    """TRL 1.16's own dataset preparation (``DPOTrainer._prepare_dataset`` and
    ``KTOTrainer._prepare_dataset``), called on a bare trainer object; ``kl_batch_size``
    turns on KTO's KL completions (``calculate_KL``, ``per_device_train_batch_size``; TRL
    builds them the same way for its train and eval sets)."""
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("trl")
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.kto_trainer import KTOTrainer

    datasets.disable_progress_bars()

    def prepare(rows: list[dict[str, Any]], tok: Any, *, kto: bool = False,
                max_length: int | None = None, kl_batch_size: int | None = None
                ) -> list[dict[str, Any]]:
        trainer = object.__new__(KTOTrainer if kto else DPOTrainer)
        trainer._tokenizer = tok
        trainer.calculate_KL = kl_batch_size is not None
        args = SimpleNamespace(dataset_num_proc=None, max_length=max_length,
                               truncation_mode="keep_start",
                               per_device_train_batch_size=kl_batch_size)
        ds = datasets.Dataset.from_list(rows)
        return list(trainer._prepare_dataset(ds, tok, args, "eval"))

    return prepare


def _records(rows: list[dict[str, Any]], tmp_path: Path, name: str) -> AlignmentData:
    return read_alignment_data(write_jsonl(tmp_path / name, rows))


@pytest.mark.parametrize("which", ["char", "bpe"])
def test_pair_ids_equal_trl(which: str, tokenizer: Any, trl_prepare: Any,
                            tmp_path: Path) -> None:
    tok = tokenizer if which == "char" else bpe_tokenizer()
    for rows, name in ((PAIRS, "p.jsonl"), (CHATS, "c.jsonl")):
        ours = tokenize_alignment(_records(rows, tmp_path, name), tok)
        theirs = trl_prepare(rows, tok)
        assert len(ours) == len(theirs) == len(rows)
        for e, t in zip(ours.examples, theirs):
            if which == "char" and t["prompt_ids"][:2] == [1, 1]:  # "<s>Q: ..." text prompt
                assert e.prompt_ids == t["prompt_ids"][1:]  # documented: one BOS, not two
            else:
                assert e.prompt_ids == t["prompt_ids"]
            assert e.responses == [t["chosen_ids"], t["rejected_ids"]]


def test_unpaired_ids_equal_trl_kto(tokenizer: Any, trl_prepare: Any, tmp_path: Path) -> None:
    rows = [{"prompt": "2+2=", "completion": "4", "label": True},
            {"prompt": "2+2=", "completion": "5", "label": False}]
    chats = [{"prompt": [user("Hi")], "completion": [assistant("Hello")], "label": True}]
    for r, name in ((rows, "u.jsonl"), (chats, "uc.jsonl")):
        ours = tokenize_alignment(_records(r, tmp_path, name), tokenizer)
        theirs = trl_prepare(r, tokenizer, kto=True)
        assert [(e.prompt_ids, e.responses[0], e.label) for e in ours.examples] == \
            [(t["prompt_ids"], t["completion_ids"], t["label"]) for t in theirs]


def test_kl_partners_equal_trl_kto(tokenizer: Any, trl_prepare: Any, tmp_path: Path) -> None:
    """KTO's KL partner of every row is stored with it (``kl_completion``) and equals TRL
    1.16's ``KL_completion_ids`` on the same rows (``KTOTrainer._prepare_dataset``: the
    completions rotated by one within data-order chunks of ``per_device_train_batch_size``,
    after rows that fill ``max_length`` are dropped). 8 rows, row 3 dropped by both, batch
    size 3: chunks (0, 1, 2), (4, 5, 6), (7); TRL pairs row 0 with row 2's completion and the
    one-row last chunk with its OWN completion. The collated KL sequences (prefkit's
    ``collate`` and the trainer's ``mismatched_examples``) equal TRL's collator's."""
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    from prefkit.align.reference import mismatched_examples

    prompts = ["Q0?", "Q1 here?", "Q2?", "Q3 " + "far too long " * 3, "Q4?", "Q5 longer?",
               "Q6", "Q7?"]
    completions = [" a", " bb", " ccc", " d", " ee", " " + "f" * 30, " g", " hh"]
    rows = [{"prompt": p, "completion": c, "label": i % 2 == 0}
            for i, (p, c) in enumerate(zip(prompts, completions))]
    records = _records(rows, tmp_path, "kl.jsonl")
    ours = tokenize_alignment(records, tokenizer, max_length=20, kl_batch_size=3)
    theirs = trl_prepare(rows, tokenizer, kto=True, max_length=20, kl_batch_size=3)
    assert ours.indices == [0, 1, 2, 4, 5, 6, 7] and len(theirs) == 7
    assert [e.kl_completion for e in ours.examples] == [t["KL_completion_ids"] for t in theirs]
    # TRL's values, by hand: row 0 <- row 2, row 1 <- row 0, ...; row 7 <- itself
    comp = [t["completion_ids"] for t in theirs]
    assert [t["KL_completion_ids"] for t in theirs] == [comp[2], comp[0], comp[1], comp[5],
                                                      comp[3], comp[4], comp[6]]
    assert ours[5].kl_completion == comp[4] and len(comp[4]) > len(ours[4].responses[0])
    # the KL sequences themselves, as TRL's collator cuts them to max_length
    ref = DataCollatorForUnpairedPreference(pad_token_id=0, max_length=20)(theirs)
    for got in (collate(ours.examples, 0, kl_max_length=20),
                collate(mismatched_examples(ours.examples, max_length=20), 0)):
        ids, att, mask = (got.kl_input_ids, got.kl_attention_mask, got.kl_loss_mask) \
            if got.kl_input_ids is not None else (got.input_ids, got.attention_mask,
                                                   got.loss_mask)
        assert torch.equal(ids, ref["KL_input_ids"])
        assert torch.equal(att, ref["KL_attention_mask"])
        assert torch.equal(mask, ref["KL_completion_mask"].bool())
    # already tokenized data: the same partners, a completion that max_length cut as cut
    plain = tokenize_alignment(records, tokenizer, max_length=20)
    assert all(e.kl_completion is None for e in plain.examples)
    added = add_kl_completions(plain, 3)
    assert [e.kl_completion for e in added.examples] == \
        kl_partners([e.responses[0] for e in plain.examples], 3)
    assert [e.kl_completion for i, e in enumerate(added.examples) if i != 5] == \
        [t["KL_completion_ids"] for i, t in enumerate(theirs) if i != 5]
    assert added.fingerprint() != plain.fingerprint() != ours.fingerprint()
    with pytest.raises(ValueError, match="no kl_completion"):
        mismatched_examples(plain.examples)
    with pytest.raises(ValueError, match="for unpaired data"):
        tokenize_alignment(_records(PAIRS, tmp_path, "p.jsonl"), tokenizer, kl_batch_size=2)


def test_keep_start_truncation_equals_trl_collator(tokenizer: Any, trl_prepare: Any,
                                                   tmp_path: Path) -> None:
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    rows = [{"prompt": "Short", "chosen": " a long chosen answer", "rejected": " no"},
            {"prompt": "A prompt far too long to fit", "chosen": " y", "rejected": " n"}]
    ours = tokenize_alignment(_records(rows, tmp_path, "t.jsonl"), tokenizer, max_length=12)
    theirs = trl_prepare(rows, tokenizer, max_length=12)
    assert len(ours) == len(theirs) == 1  # both drop the row whose prompt fills max_length
    [drop] = ours.dropped
    assert (drop.line, drop.index) == (2, 1) and "max_length is 12" in str(drop)
    [cut] = ours.truncated
    assert (cut.action, cut.response, cut.line) == ("response_cut", 0, 1)
    ref = DataCollatorForPreference(pad_token_id=0, max_length=12)(theirs)
    got = collate(ours.examples, 0)
    t = ref["input_ids"].shape[1]
    assert torch.equal(got.input_ids[:, :t], ref["input_ids"])
    assert torch.equal(got.attention_mask[:, :t], ref["attention_mask"])
    assert torch.equal(got.loss_mask[:, :t], ref["completion_mask"].bool())
    assert "1 dropped" in ours.summary() and "1 responses cut" in ours.summary()


# -- tokenization: the properties that matter ---------------------------------------------
@pytest.mark.parametrize("which", ["char", "bpe"])
def test_masks_boundary_bos_and_eos(which: str, tokenizer: Any, tmp_path: Path) -> None:
    tok = tokenizer if which == "char" else bpe_tokenizer()
    standard = tokenize_alignment(_records(PAIRS, tmp_path, "p.jsonl"), tok)
    bos = tok.bos_token or ""
    for row, e in zip(PAIRS, standard.examples):
        for text, ids in zip((row["chosen"], row["rejected"]), e.responses):
            full = row["prompt"] + (text if text.endswith(tok.eos_token) else
                                    text + tok.eos_token)
            want = full if bos and full.startswith(bos) else bos + full  # no double BOS
            assert tok.decode(e.prompt_ids + ids, skip_special_tokens=False) == want
            assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
        if tok.bos_token_id is not None:
            assert e.prompt_ids.count(tok.bos_token_id) == 1
    if which == "bpe":  # "xa" + "b!": the merged "ab" token is the response's, and scored
        row = standard.examples[1]
        assert tok.decode(row.prompt_ids) == "x" and tok.decode(row.responses[0][:1]) == "ab"
        assert [(n.action, n.line, n.tokens) for n in standard.report] == [
            ("boundary_moved", 2, 1)]
    chats = tokenize_alignment(_records(CHATS, tmp_path, "c.jsonl"), tok)
    multi = chats.examples[1]
    prompt_text = tok.decode(multi.prompt_ids)
    assert "2+2?" in prompt_text and "4" in prompt_text and "3+3?" in prompt_text
    assert tok.eos_token_id in multi.responses[0]  # the end of the assistant turn is scored
    batch = collate(chats.examples, chats.pad_token_id)
    lp = len(multi.prompt_ids)
    for k in (0, 1):
        row = k * 2 + 1  # response-major: row k*B + b
        n = lp + len(multi.responses[k])
        assert batch.input_ids[row, :n].tolist() == multi.prompt_ids + multi.responses[k]
        assert not batch.loss_mask[row, :lp].any()  # prompt never scored (earlier turns too)
        assert batch.loss_mask[row, lp:n].all() and not batch.loss_mask[row, n:].any()


def test_empty_prompt_without_bos_is_reported(tmp_path: Path) -> None:
    tok = bpe_tokenizer()
    d = AlignmentData("pairwise", [""], [["yes", "no"]], source_lines=[7])
    t = tokenize_alignment(d, tok)
    assert [(n.action, n.line) for n in t.report] == [("unscored_first", 7)]
    b = collate(t.examples, t.pad_token_id)
    assert b.loss_mask[:, 0].sum() == 0 and b.loss_mask[0].sum() == len(t[0].responses[0]) - 1


def test_prompt_truncation_keeps_end_and_bos(tokenizer: Any) -> None:
    d = AlignmentData("pairwise", ["abcdefgh"], [["xy", "z"]], source_lines=[3])
    t = tokenize_alignment(d, tokenizer, max_prompt_length=4)
    assert tokenizer.decode(t[0].prompt_ids, skip_special_tokens=False) == "<s>fgh"
    assert [(n.action, n.tokens, n.line) for n in t.report] == [("prompt_cut", 5, 3)]
    e = tokenize_alignment(d, tokenizer, max_length=6, truncation_mode="keep_end")
    assert tokenizer.decode(e[0].prompt_ids, skip_special_tokens=False) == "<s>gh"
    assert [len(r) for r in e[0].responses] == [3, 2]  # "xy</s>" fits after the cut prompt
    tight = tokenize_alignment(d, tokenizer, max_length=4, truncation_mode="keep_end")
    assert tight[0].prompt_ids == [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("h")]
    assert [len(r) for r in tight[0].responses] == [2, 2]
    assert {n.action for n in tight.report} == {"prompt_cut", "response_cut"}


# -- collation ----------------------------------------------------------------------------
def test_collate_listwise_pads_missing_responses() -> None:
    ex = [AlignExample([1, 5], [[6, 2], [7, 2], [8, 8, 2]]), AlignExample([1], [[9, 2], [4, 2]])]
    b = collate(ex, pad_token_id=0, pad_to_multiple_of=8)
    assert b.input_ids.shape == (6, 8) and b.num_responses == 3
    assert b.valid.tolist() == [[True, True, True], [True, True, False]]
    assert b.input_ids[5].tolist() == [1] + [0] * 7  # prompt 1 + an empty response
    assert not b.loss_mask[5].any() and b.attention_mask[5].tolist() == [1] + [0] * 7
    assert b.input_ids[4].tolist()[:5] == [1, 5, 8, 8, 2] and b.label is None
    assert b.loss_mask[4].tolist()[:6] == [False, False, True, True, True, False]
    assert b.to("cpu").input_ids.dtype == torch.long and b.loss_mask.dtype == torch.bool


def test_collate_unpaired_builds_mismatched_kl_rows() -> None:
    """The KL rows are each prompt with its own ``kl_completion`` (fixed when the data was
    prepared), not a rotation inside the batch; without one there are no KL rows."""
    ex = [AlignExample([1, 10], [[20, 2]], label=True, kl_completion=[22, 2]),
          AlignExample([1, 11, 11], [[21, 21, 2]], label=False, kl_completion=[20, 2]),
          AlignExample([1, 12], [[22, 2]], label=True, kl_completion=[21, 21, 2])]
    b = collate(ex, pad_token_id=0)
    assert b.input_ids.shape == (3, 6) and b.label.tolist() == [True, False, True]
    kl = [r[: int(m.sum())] for r, m in zip(b.kl_input_ids.tolist(), b.kl_attention_mask)]
    assert kl == [[1, 10, 22, 2], [1, 11, 11, 20, 2], [1, 12, 21, 21, 2]]
    assert b.kl_loss_mask[2].tolist() == [False, False, True, True, True]
    one = collate(ex[2:], pad_token_id=0)  # the partner need not be in the batch
    assert one.kl_input_ids.tolist() == [[1, 12, 21, 21, 2]]
    cut = collate(ex, pad_token_id=0, kl_max_length=4)
    assert cut.kl_input_ids.shape[1] == 4 and cut.kl_input_ids[2].tolist() == [1, 12, 21, 21]
    bare = collate([dataclasses.replace(e, kl_completion=None) for e in ex], pad_token_id=0)
    assert bare.label is not None and bare.kl_input_ids is None
    with pytest.raises(ValueError, match="at least one example"):
        collate([], 0)


def test_fingerprint_and_batches_are_deterministic(tokenizer: Any, tmp_path: Path) -> None:
    d = _records(PAIRS, tmp_path, "p.jsonl")
    a, b = tokenize_alignment(d, tokenizer), tokenize_alignment(d, tokenizer)
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 64
    assert tokenize_alignment(d.select([0, 1]), tokenizer).fingerprint() != a.fingerprint()
    assert tokenize_alignment(d, tokenizer, max_length=8).fingerprint() != a.fingerprint()
    runs = [[idx for idx, _ in iter_batches(a, 2, shuffle=True,
                                            generator=torch.Generator().manual_seed(3))]
            for _ in range(2)]
    assert runs[0] == runs[1] and sorted(sum(runs[0], [])) == [0, 1, 2]
    batches = list(iter_batches(a, 2))
    assert [idx for idx, _ in batches] == [[0, 1], [2]]
    assert batches[0][1].input_ids.shape[0] == 4  # K*B rows


def test_listwise_and_unpaired_tokenize(tokenizer: Any) -> None:
    d = AlignmentData("listwise", ["Q:", [user("Hi")]], [["a", "bb", "ccc"], ["x", "yy"]])
    t = tokenize_alignment(d, tokenizer)
    assert [len(e.responses) for e in t.examples] == [3, 2]
    for r, text in zip(t[0].responses, ["a", "bb", "ccc"]):
        assert tokenizer.decode(t[0].prompt_ids + r, skip_special_tokens=False) == \
            f"<s>Q:{text}</s>"
    b = collate(t.examples, t.pad_token_id)
    assert b.valid.tolist() == [[True, True, True], [True, True, False]]
    u = tokenize_alignment(unpair(AlignmentData("pairwise", ["Q:"], [["a", "b"]])), tokenizer)
    assert [e.label for e in u.examples] == [True, False] and u.kind == "unpaired"


def test_other_input_problems(tmp_path: Path) -> None:
    both = write_jsonl(tmp_path / "both.jsonl", [
        {"prompt": "q", "completions": ["a", "b"], "ranks": [2, 1], "scores": [5, 1]}])
    d = read_alignment_data(both)
    assert d.responses == [["b", "a"]] and d.warnings[0].kind == "ignored_column"
    rb2 = write_jsonl(tmp_path / "rb2.jsonl", [
        {"prompt": "q", "chosen": ["a"], "rejected": ["b", "c"], "num_correct": 1}])
    with pytest.raises(InvalidInputError, match="best-of-N sets, not preference pairs"):
        read_alignment_data(rb2)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "a"}])
    with pytest.raises(InvalidInputError, match="the record is invalid"):
        read_alignment_data(bad, skip_invalid=True)
    with pytest.raises(InvalidInputError, match="chat=True needs one"):
        read_alignment_data(write_jsonl(tmp_path / "np.jsonl", [
            {"chosen": "a", "rejected": "b"}]), chat=True)


def test_csv_cells_hold_json_lists(tmp_path: Path) -> None:
    path = tmp_path / "ranked.csv"
    path.write_text('prompt,completions,ranks\nq,"[""b"", ""a""]","[2, 1]"\n'
                    'r,"[""x"", ""y""]","[1, 1]"\n')
    with pytest.raises(InvalidInputError, match=r"tied ranks.*ranked\.csv line 3"):
        read_alignment_data(path)
    assert read_alignment_data(path, skip_invalid=True).responses == [["a", "b"]]
