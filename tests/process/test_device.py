"""Where the fine-tuned PRM runs (FinetunePRMConfig.device, load_prm(device=), --device).

On the CPU (every machine): device="cpu" is the default's run bit for bit; a device that is
not there, or not a device, is refused naming the option and the fix; a checkpoint written
on a GPU (its tensors tagged cuda:0) resumes on a CPU (read with map_location="cpu") and
the run equals an uninterrupted one; the CLI's --device on train, eval, score and best-of-n.

On a GPU (skipped without one; benchmarks/gpu_prm.sh runs them where a GPU is lent): the
same run on cuda and on the CPU agree (float rounding: 1e-3 on losses and scores), a stopped
run resumed on cuda equals the uninterrupted cuda run, a GPU-trained folder loads on the CPU
with the same scores, bf16 trains, and the loop makes no host sync per step
(torch.cuda.set_sync_debug_mode counts them).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from prm_minilm import minilm_path
from typer.testing import CliRunner

from prefkit.process import load_prm
from prefkit.process.finetune import FinetunedPRM, FinetunePRMConfig, finetune_prm
from prefkit.process.synthetic import make_solutions

CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (benchmarks/gpu_prm.sh)")
no_gpu = pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without a GPU")
GPU_TOL = 1e-3  # float32 on another device: other kernels, other summation orders


def _tokenizer() -> Any:
    """The offline MiniLM's tokenizer; on the GPU machine (no such package there) the copy
    benchmarks/gpu_prm.sh carries, named by PREFKIT_TEST_MINILM."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def _tiny_bert(tok: Any) -> Any:
    from transformers import BertConfig, BertModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=128))


def _train(out: Path, **config: Any) -> dict[str, Any]:
    tok = _tokenizer()
    data, _ = make_solutions(24, np.random.default_rng(0))
    kw = {k: config.pop(k) for k in ("stop_after", "resume") if k in config}
    cfg = FinetunePRMConfig(**{"max_length": 32, "epochs": 2, "batch_size": 4,
                               "learning_rate": 1e-3, **config})
    return finetune_prm(cfg, out, data, model=_tiny_bert(tok), tokenizer=tok, progress=False,
                        **kw)


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").open()]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {**load_file(str(out / "backbone" / "model.safetensors")),
            **{"head." + k: v for k, v in load_file(str(out / "head.safetensors")).items()}}


def _scores(folder: Path, device: str) -> list[np.ndarray]:
    data, _ = make_solutions(24, np.random.default_rng(0))
    return load_prm(folder, device=device).score(data.prompts[:8], data.steps[:8])


# -- the CPU --------------------------------------------------------------------------------
def test_device_cpu_is_the_default_run_bit_for_bit(tmp_path: Path) -> None:
    if CUDA:
        pytest.skip("the default is the GPU here")
    a = _train(tmp_path / "default")
    b = _train(tmp_path / "cpu", device="cpu")
    assert a["device"] == b["device"] == "cpu"
    assert _losses(tmp_path / "default") == _losses(tmp_path / "cpu")
    wa, wb = _weights(tmp_path / "default"), _weights(tmp_path / "cpu")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    prm = load_prm(tmp_path / "cpu", device="cpu")
    assert isinstance(prm, FinetunedPRM) and prm.device == torch.device("cpu")
    for x, y in zip(_scores(tmp_path / "cpu", "cpu"), _scores(tmp_path / "cpu", "auto")):
        np.testing.assert_array_equal(x, y)


def test_device_and_precision_names_are_checked() -> None:
    for bad in ("gpu", "tpu", "cuda:x", "mps"):
        with pytest.raises(ValueError, match=r"give auto .* cpu, cuda or cuda:N"):
            FinetunePRMConfig(device=bad)
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        FinetunePRMConfig(precision="fp16")
    # a config that names a GPU is a valid config on any machine (a GPU-trained folder's)
    assert FinetunePRMConfig(device="cuda:1").device == "cuda:1"


@no_gpu
def test_a_gpu_that_is_not_there_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"device cuda: cuda requested but "
                       r"torch\.cuda\.is_available\(\) is False .*use device='cpu'"):
        _train(tmp_path / "run", device="cuda")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    _train(tmp_path / "ok", epochs=1)
    with pytest.raises(ValueError, match=r"device cuda:0: cuda requested .* use device='cpu'"):
        load_prm(tmp_path / "ok", device="cuda:0")


def _tag_as_gpu(path: Path) -> None:
    """Rewrite a torch.save file as if written on a GPU: every storage's location 'cpu' ->
    'cuda:0' (the pickle's persistent ids; torch.load without map_location then needs a
    GPU, as a real GPU checkpoint does)."""
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    name = next(n for n in files if n.endswith("/data.pkl"))
    # protocol 2 writes the location as BINUNICODE: 'X', a 4-byte length, the text
    old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    assert files[name].count(old) > 0
    files[name] = files[name].replace(old, new)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for n, b in files.items():
            z.writestr(n, b)
    path.write_bytes(buf.getvalue())


@no_gpu
def test_a_checkpoint_written_on_a_gpu_resumes_on_the_cpu(tmp_path: Path) -> None:
    whole = _train(tmp_path / "whole", disable_dropout=False)
    assert _train(tmp_path / "part", disable_dropout=False, stop_after=3)["steps"] == 3
    ck = tmp_path / "part" / "checkpoint.pt"
    _tag_as_gpu(ck)
    with pytest.raises(RuntimeError, match="CUDA"):  # as a GPU checkpoint on this machine
        torch.load(ck, weights_only=True)
    got = torch.load(ck, map_location="cpu", weights_only=True)
    assert got["model"]["head.weight"].device.type == "cpu"
    # the checkpoint says cuda:0, the run resumes here on the CPU (device is not compared)
    resumed = _train(tmp_path / "part", disable_dropout=False, device="cpu", resume=True)
    assert resumed["finished"] and resumed["threshold"] == whole["threshold"]
    assert _losses(tmp_path / "part") == _losses(tmp_path / "whole")
    wa, wb = _weights(tmp_path / "whole"), _weights(tmp_path / "part")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_losses_read_every_k_steps_as_on_a_gpu(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's cadence (losses kept on the device, read every LOG_EVERY steps, and before
    every checkpoint) run on the CPU with k = 7: the same metrics.jsonl row for row, also
    for a run stopped mid-way (3 steps: nothing read yet) and resumed."""
    from prefkit.process import finetune

    _train(tmp_path / "every", device="cpu")
    monkeypatch.setitem(finetune.LOG_EVERY, "cpu", 7)
    _train(tmp_path / "seven", device="cpu")
    _train(tmp_path / "part", device="cpu", stop_after=3)
    assert len(_losses(tmp_path / "part")) == 3  # read at the stop's checkpoint
    _train(tmp_path / "part", device="cpu", resume=True)
    want = (tmp_path / "every" / "metrics.jsonl").read_text()
    assert len(want.splitlines()) > 7
    assert (tmp_path / "seven" / "metrics.jsonl").read_text() == want
    assert (tmp_path / "part" / "metrics.jsonl").read_text() == want


def test_bf16_trains_under_autocast_and_scores_in_float32_on_a_cpu(tmp_path: Path) -> None:
    import dataclasses

    _train(tmp_path / "fp32", device="cpu", epochs=1)
    s = _train(tmp_path / "bf16", device="cpu", epochs=1, precision="bf16")
    a, b = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert s["precision"] == "bf16" and all(math.isfinite(x) for x in b)
    assert a != b and np.allclose(a, b, atol=0.05)  # bfloat16 products: near, not equal
    prm = load_prm(tmp_path / "bf16", device="cpu")
    fp32 = FinetunedPRM(prm.scorer, prm.tokenizer,
                        dataclasses.replace(prm.config, precision="fp32"), prm.threshold)
    data, _ = make_solutions(24, np.random.default_rng(0))
    for x, y in zip(prm.score(data.prompts[:4], data.steps[:4]),
                    fp32.score(data.prompts[:4], data.steps[:4])):
        np.testing.assert_array_equal(x, y)  # bf16 is the GPU's: a CPU scores in float32


def test_resume_with_another_precision_is_refused(tmp_path: Path) -> None:
    _train(tmp_path / "run", stop_after=2, device="cpu")
    with pytest.raises(ValueError, match=r"different config \(fields \['precision'\]\)"):
        _train(tmp_path / "run", resume=True, precision="bf16", device="cpu")


# -- the CLI --------------------------------------------------------------------------------
runner = CliRunner()


def _cli(*args: str) -> tuple[int, str, str]:
    from prefkit.cli.main import app

    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``prefkit prm train --finetune --device cpu`` on a tiny BERT folder."""
    tmp = tmp_path_factory.mktemp("prm_device_cli")
    tok = _tokenizer()
    _tiny_bert(tok).save_pretrained(str(tmp / "bert"))
    tok.save_pretrained(str(tmp / "bert"))
    data, _ = make_solutions(24, np.random.default_rng(0))
    rows = [{"id": str(i), "problem": p, "steps": s, "label": f}
            for i, (p, s, f) in enumerate(zip(data.prompts, data.steps, data.first_error))]
    (tmp / "data.json").write_text(json.dumps(rows))
    cands = [{"prompt": data.prompts[i], "candidates": [data.steps[i], data.steps[i + 1]]}
             for i in (0, 2, 4)]
    (tmp / "cands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cands))
    code, out, err = _cli("prm", "train", str(tmp / "data.json"), "--finetune", "--backbone",
                          str(tmp / "bert"), "--max-length", "32", "--epochs", "1",
                          "--device", "cpu", "--output", str(tmp / "run"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["finished"] and summary["device"] == "cpu"
    cfg = json.loads((tmp / "run" / "config.json").read_text())["config"]
    assert (cfg["device"], cfg["precision"]) == ("cpu", "fp32")
    return {"tmp": tmp, "run": tmp / "run"}


def test_cli_eval_score_best_of_n_on_the_cpu(cli_run: dict[str, Path]) -> None:
    tmp, run = cli_run["tmp"], cli_run["run"]
    code, out, err = _cli("prm", "eval", str(run), str(tmp / "data.json"), "--device", "cpu",
                          "--json")
    assert code == 0, err
    assert 0 <= json.loads(out)["f1"] <= 1
    code, out, err = _cli("prm", "score", str(run), str(tmp / "cands.jsonl"), "--device",
                          "cpu", "--json")
    assert code == 0, err
    got = json.loads(out)["solutions"]
    data, _ = make_solutions(24, np.random.default_rng(0))
    want = load_prm(run, device="cpu").score([data.prompts[0]] * 2, data.steps[0:2])
    for row, w in zip(got[:2], want):  # the CLI's scores are the Python API's
        np.testing.assert_allclose(row["step_scores"], w, atol=1e-6)
    code, out, err = _cli("prm", "best-of-n", str(run), str(tmp / "cands.jsonl"), "--device",
                          "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["n_prompts"] == 3


def test_cli_score_writes_only_results_on_stdout(cli_run: dict[str, Path]) -> None:
    """``prefkit prm score RUN FILE > scores.jsonl``: the progress bar goes to standard error,
    every line of standard output is a JSON record (the bar's last frame was stdout's first
    line: 'scoring ... 3/3')."""
    tmp, run = cli_run["tmp"], cli_run["run"]
    for verb in ("score", "best-of-n"):
        code, out, err = _cli("prm", verb, str(run), str(tmp / "cands.jsonl"), "--device", "cpu")
        assert code == 0, err
        lines = out.splitlines()
        assert lines and all(isinstance(json.loads(x), dict) for x in lines), out[:300]


@no_gpu
@pytest.mark.parametrize("verb", ["eval", "score", "best-of-n", "train"])
def test_cli_refuses_a_gpu_that_is_not_there(cli_run: dict[str, Path], verb: str) -> None:
    tmp, run = cli_run["tmp"], cli_run["run"]
    args = (["train", str(tmp / "data.json"), "--finetune", "--output", str(tmp / "new")]
            if verb == "train" else [verb, str(run), str(tmp / "data.json")])
    code, _, err = _cli("prm", *args, "--device", "cuda")
    assert code != 0
    text = " ".join(err.split())
    assert "--device cuda: cuda requested but torch.cuda.is_available() is False" in text
    assert "use --device cpu" in text
    assert not (tmp / "new").exists()


def test_cli_refuses_what_is_not_a_device(cli_run: dict[str, Path]) -> None:
    code, _, err = _cli("prm", "score", str(cli_run["run"]), str(cli_run["tmp"] / "data.json"),
                        "--device", "gpu")
    assert code != 0 and "--device 'gpu' is not a device" in " ".join(err.split())
    code, _, err = _cli("prm", "train", str(cli_run["tmp"] / "data.json"), "--output",
                        str(cli_run["tmp"] / "frozen"), "--precision", "bf16")
    assert code != 0 and "--precision is an option of --kind finetune" in err


# -- a GPU ----------------------------------------------------------------------------------
@needs_gpu
def test_gpu_cli_scores_on_cuda_as_on_the_cpu(cli_run: dict[str, Path]) -> None:
    got = {}
    for device in ("cpu", "cuda"):
        code, out, err = _cli("prm", "score", str(cli_run["run"]), str(cli_run["tmp"] /
                              "cands.jsonl"), "--device", device, "--json")
        assert code == 0, err
        got[device] = [r["step_scores"] for r in json.loads(out)["solutions"]]
    for a, b in zip(got["cpu"], got["cuda"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


@needs_gpu
def test_gpu_run_agrees_with_the_cpu_run(tmp_path: Path) -> None:
    cpu = _train(tmp_path / "cpu", device="cpu")
    gpu = _train(tmp_path / "gpu", device="cuda")
    assert gpu["device"].startswith("cuda") and gpu["steps"] == cpu["steps"]
    np.testing.assert_allclose(_losses(tmp_path / "gpu"), _losses(tmp_path / "cpu"),
                               atol=GPU_TOL, rtol=GPU_TOL)
    # the GPU-trained folder, scored on the CPU and on the GPU, against the CPU-trained one
    on_cpu, on_gpu = _scores(tmp_path / "gpu", "cpu"), _scores(tmp_path / "gpu", "cuda")
    for a, b, c in zip(on_cpu, on_gpu, _scores(tmp_path / "cpu", "cpu")):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=GPU_TOL)
    assert load_prm(tmp_path / "gpu", device="cpu").device.type == "cpu"


@needs_gpu
@pytest.mark.parametrize("dropout", [False, True])
def test_gpu_stopped_and_resumed_equals_uninterrupted(tmp_path: Path, dropout: bool) -> None:
    """Bit for bit where the GPU repeats itself (two uninterrupted runs equal); where a
    kernel does not (atomics in an attention backward), within what two uninterrupted runs
    differ by, at most 1e-5."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        kw = {"device": "cuda", "disable_dropout": not dropout}
        whole = _train(tmp_path / "whole", **kw)
        _train(tmp_path / "again", **kw)
        _train(tmp_path / "part", stop_after=3, **kw)
        resumed = _train(tmp_path / "part", resume=True, **kw)
    finally:
        torch.use_deterministic_algorithms(False)
    wa, wb, wc = (_weights(tmp_path / n) for n in ("whole", "part", "again"))
    repeats = _losses(tmp_path / "again") == _losses(tmp_path / "whole") and \
        all(torch.equal(wa[k], wc[k]) for k in wa)
    if repeats:
        assert resumed["threshold"] == whole["threshold"]
        assert _losses(tmp_path / "part") == _losses(tmp_path / "whole")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    else:
        np.testing.assert_allclose(_losses(tmp_path / "part"), _losses(tmp_path / "whole"),
                                   atol=1e-5)
        for k in wa:
            torch.testing.assert_close(wb[k], wa[k], atol=1e-5, rtol=1e-5)
    print(f"dropout={dropout}: the GPU repeats itself bit for bit: {repeats}")


@needs_gpu
def test_gpu_bf16_trains_and_the_loop_does_not_sync_every_step(tmp_path: Path) -> None:
    """torch.cuda.set_sync_debug_mode("warn") warns at every read of the GPU by the host,
    from the Python line that asked; no line of prefkit may ask once a step (the step
    losses are read every LOG_EVERY steps; checkpoints and the folder copy the weights)."""
    import collections
    import warnings

    import prefkit

    package = str(Path(prefkit.__file__).resolve().parent)  # prefkit's own lines only

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            torch.ones(1, device="cuda").item()  # one sync here: the warnings do come
            s = _train(tmp_path / "bf16", device="cuda", precision="bf16", epochs=4,
                       batch_size=2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert s["finished"] and s["precision"] == "bf16" and s["steps"] >= 40
    assert all(math.isfinite(x) for x in _losses(tmp_path / "bf16"))
    seen = [w for w in seen if "synchroniz" in str(w.message)]
    assert any(Path(w.filename).resolve() == Path(__file__).resolve() for w in seen)
    syncs = collections.Counter((Path(w.filename).name, w.lineno) for w in seen
                                if str(Path(w.filename).resolve()).startswith(package))
    assert not syncs or max(syncs.values()) < s["steps"] / 4, syncs.most_common(5)
