"""The tree that the new-user bad-input campaign ran in, rebuilt once per session.

``../shared/campaigns/new_user_bad_input/``: ``observed.jsonl`` (one row per run: id
``command.input-class``, the command as typed, what it printed) and ``inputs/`` (the small
input files). The commands run from ``inputs/``; this fixture rebuilds what they expect
around it:

* ``inputs/``: a copy of the campaign's input files, plus the large ones regenerated
  (``long.csv``, ``p_long.jsonl``, ``s_long.jsonl``: one field of 1 MB), ``rt_good`` (a
  reward model trained by ``prefkit reward train`` on ``p_good.jsonl``), ``ft_model`` (a
  reward model fine-tuned by ``prefkit reward finetune``) and ``partial_rm`` (a reward-model folder with
  only its config.json);
* ``data/``: a folder (``../data`` where a file is expected);
* ``my-llama/``: a tiny Llama (``prefkit.align.tiny``) saved with ``save_pretrained``;
* ``runs/dpo``: a finished ``prefkit align`` run;
* ``crowd.csv``: crowd votes under columns that no format names.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_table import invoke
from shared_paths import SHARED

CAMPAIGN = SHARED / "campaigns" / "new_user_bad_input"
LONG = 1_000_000  # characters of the one long field of the *_long* inputs


def _long_inputs(inputs: Path) -> None:
    lines = (inputs / "good.csv").read_text(encoding="utf-8").splitlines()
    big = "L" * LONG  # an item whose name is 1 MB: it only ever wins
    (inputs / "long.csv").write_text("\n".join(lines + [f"{big},A,a", f"B,{big},b"]) + "\n",
                                     encoding="utf-8")
    for name, out, field in (("p_good.jsonl", "p_long.jsonl", "chosen"),
                             ("s_good.jsonl", "s_long.jsonl", "response")):
        rows = [json.loads(x) for x in (inputs / name).read_text(encoding="utf-8").splitlines()]
        rows[2][field] = rows[2][field] + " " + "long " * (LONG // 5)
        (inputs / out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _ok(args: list[str]) -> None:
    r = invoke(args)
    assert r.exit_code == 0, f"setting up the campaign tree: prefkit {' '.join(args)}\n" \
        f"{r.stdout}\n{r.stderr}\n{r.exception!r}"


@pytest.fixture(scope="session")
def campaign_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The root of the rebuilt tree (the commands run in ``root / "inputs"``)."""
    if not (CAMPAIGN / "observed.jsonl").is_file():
        pytest.fail(f"{CAMPAIGN} is missing: the campaign's observed.jsonl and inputs/ are "
                    "the test cases of this suite")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    root = tmp_path_factory.mktemp("campaign")
    inputs = root / "inputs"
    shutil.copytree(CAMPAIGN / "inputs", inputs)
    for p in inputs.iterdir():  # the shared copy is read-only
        p.chmod(0o644)
    _long_inputs(inputs)
    (root / "data").mkdir()
    shutil.copy(inputs / "good.csv", root / "data" / "votes.csv")
    (root / "crowd.csv").write_text(
        "id,prompt,model_x,model_y,worker,winner,left,right\n"
        + "".join(f"{i},q{i},{'ABC'[i % 3]},{'BCA'[i % 3]},w{i % 2},left,x,y\n"
                  for i in range(12)), encoding="utf-8")
    tok = char_tokenizer()
    tiny_llama(len(tok), seed=0).save_pretrained(root / "my-llama")
    tok.save_pretrained(root / "my-llama")

    old = Path.cwd()
    with pytest.MonkeyPatch.context() as mp:
        # embeddings are cached outside the tree, once for the whole session
        mp.setenv("PREFKIT_CACHE_DIR", str(tmp_path_factory.mktemp("campaign_cache")))
        # nothing may reach the network (a Hub id that is not cached fails at once)
        mp.setenv("HF_HUB_OFFLINE", "1")
        import huggingface_hub.constants

        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        os.chdir(inputs)
        try:
            _ok(["reward", "train", "p_good.jsonl", "--output", "rt_good", "--epochs", "20",
                 "--json"])
            _ok(["reward", "finetune", "p_emoji.jsonl", "--max-steps", "1", "--batch-size", "4",
                 "--max-length", "64", "--output", "ft_model", "--json"])
            _ok(["align", "--model", "../my-llama", "--data", "p_good.jsonl", "--max-steps",
                 "1", "--batch-size", "4", "--max-length", "128", "--output", "../runs/dpo",
                 "--json"])
        finally:
            os.chdir(old)
        (inputs / "partial_rm").mkdir()
        shutil.copy(inputs / "rt_good" / "config.json", inputs / "partial_rm" / "config.json")
        yield root
