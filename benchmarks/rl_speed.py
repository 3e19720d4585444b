"""GRPO throughput and peak memory: prefkit's ``train_rl`` against TRL 1.16's
``GRPOTrainer``, side by side in one run on the same model, prompts, reward, generations
per prompt, batch and steps (CPU by default; ``--device cuda`` where a GPU is lent).

Contestants, each in a FRESH subprocess, interleaved and repeated (``--repeats``):

* ``prefkit`` -- :func:`prefkit.rl.train.train_rl`, ``algo="grpo"`` (loss ``dapo``):
  the prompt run once for its G samples, in generation (KV cache repeated) and in the
  training forward (KV cache with gradients), the sampling policy's log-probs recorded
  during generation (no extra pass), the LM head applied only at the completion tokens, in
  chunks; its time includes writing ``checkpoint.pt`` and the model folder at the end
  (TRL's run saves nothing: ``save_strategy="no"``);
* ``prefkit_noshare`` -- the same with ``share_prefill=False`` (generation and the training
  forward run each prompt G times, as TRL does): what sharing the prompt buys;
* ``trl`` -- ``GRPOTrainer`` with ``GRPOConfig`` at its defaults except what makes the runs
  equal: ``per_device_train_batch_size = prompts x G`` and ``steps_per_generation=1`` (one
  optimizer step per sampled batch, as prefkit's step), ``num_generations``,
  ``max_completion_length``, ``max_steps``, ``learning_rate``, ``beta=0`` (its default;
  no reference model in either), ``loss_type="dapo"`` (its default), ``temperature=1``,
  ``top_p=1``, ``top_k=0`` (its defaults), ``bf16=False``, ``gradient_checkpointing=False``
  (its default is True; prefkit's is off), ``disable_dropout=True``,
  ``shuffle_dataset=False``, ``use_cpu`` (CPU), ``report_to="none"``, ``save_strategy="no"``.

The model: a randomly initialised ``LlamaForCausalLM`` (:func:`prefkit.align.tiny.tiny_llama`,
seed 0; ``--preset small``: hidden 256, 4 layers, 8 heads (4 KV), MLP 768, vocabulary 32,000
as a real model's head) with the character tokenizer, saved once under
``benchmarks/_work/rl_speed/``. A random model rarely emits EOS, so every completion runs to
``max_completion_length``: both do the same generation work. Prompts: the first GSM8K test
questions as ``"Q: {question}\\nA:"`` (about 200-300 characters = tokens). Reward: the
completion's length in characters (TRL's signature; cheap, the same in both; it varies, so
advantages are not all zero).

Measured per child: ``episodes/s`` = completions sampled / wall seconds of the training call
(``trainer.train()`` / ``train_rl``; model loading and set-up outside), CPU seconds of that
call, and the peak RSS increase during it (``VmHWM`` reset via ``/proc/self/clear_refs``
before the call, minus the RSS then; CUDA: ``torch.cuda.max_memory_allocated``).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rl_speed.py --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "rl_speed"
PRESETS = {
    "small": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
              "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 32000,
              "max_position_embeddings": 1024},
    "medium": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8,
               "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 32000,
               "max_position_embeddings": 2048},
}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def text_length(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def prompts(n: int) -> list[str]:
    src = HERE.parent.parent / "shared" / "data" / "rl" / "gsm8k" / "test.jsonl"
    rows = [json.loads(x) for x in src.read_text().splitlines()[:n]]
    return [f"Q: {r['question']}\nA:" for r in rows]


def model_dir(preset: str) -> Path:
    out = WORK / f"model_{preset}"
    if not (out / "config.json").is_file():
        from prefkit.align.tiny import char_tokenizer, tiny_llama

        tok = char_tokenizer()
        cfg = dict(PRESETS[preset])
        model = tiny_llama(cfg.pop("vocab_size"), seed=0, **cfg)
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return out


def worker(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    folder = model_dir(args.preset)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    ps = prompts(args.prompts * args.steps)
    device = args.device
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.who == "trl":
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        cfg = GRPOConfig(
            output_dir=str(WORK / "trl_out"), per_device_train_batch_size=args.prompts * args.g,
            steps_per_generation=1, num_generations=args.g,
            max_completion_length=args.max_new_tokens, max_steps=args.steps,
            learning_rate=1e-6, beta=0.0, loss_type="dapo", temperature=1.0, top_p=1.0,
            top_k=0, bf16=False, gradient_checkpointing=False, disable_dropout=True,
            shuffle_dataset=False, use_cpu=device == "cpu", report_to="none",
            save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0)
        trainer = GRPOTrainer(model=model, reward_funcs=text_length, args=cfg,
                              train_dataset=Dataset.from_dict({"prompt": ps}),
                              processing_class=tok)
        run = trainer.train
    else:
        from prefkit.rl import RLConfig, train_rl

        cfg = RLConfig(num_generations=args.g, batch_size=args.prompts,
                       max_new_tokens=args.max_new_tokens, max_steps=args.steps,
                       learning_rate=1e-6, shuffle=False,
                       share_prefill=args.who == "prefkit")

        def run() -> None:
            train_rl(model, {"prompt": ps}, text_length, tokenizer=tok, config=cfg,
                     output_dir=WORK / f"out_{args.who}", overwrite=True, progress=False,
                     device=device, checkpoint_seconds=None)
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss_kib("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = (_rss_kib("VmHWM") - base) / 1024
    episodes = args.prompts * args.g * args.steps
    out = {"who": args.who, "wall_s": wall, "cpu_s": cpu, "episodes": episodes,
           "episodes_per_s": episodes / wall, "peak_rss_increase_mib": peak}
    if device == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--who", choices=["prefkit", "prefkit_noshare", "trl"])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--g", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.who:
        print(json.dumps(worker(args)))
        return
    model_dir(args.preset)
    results: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        for who in ("prefkit", "trl", "prefkit_noshare"):
            cmd = [sys.executable, __file__, "--who", who] + [
                a for k, v in vars(args).items() if k not in ("who", "repeats", "json")
                and v is not None for a in (f"--{k.replace('_', '-')}", str(v))]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode:
                print(out.stderr[-3000:])
                raise SystemExit(f"{who} failed")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            results.setdefault(who, []).append(row)
            print(f"repeat {r}: {who:<16} {row['episodes_per_s']:.2f} episodes/s, wall "
                  f"{row['wall_s']:.1f} s, CPU {row['cpu_s']:.1f} s, peak +"
                  f"{row['peak_rss_increase_mib']:.0f} MiB"
                  + (f", CUDA {row['cuda_peak_mib']:.0f} MiB" if "cuda_peak_mib" in row else ""),
                  flush=True)
    med = {w: statistics.median(x["episodes_per_s"] for x in rows) for w, rows in results.items()}
    mem = {w: statistics.median(x["peak_rss_increase_mib"] for x in rows)
           for w, rows in results.items()}
    cpu = {w: statistics.median(x["cpu_s"] / x["episodes"] for x in rows)
           for w, rows in results.items()}
    print(f"\n{args.preset}: {args.prompts} prompts x G={args.g}, {args.max_new_tokens} new "
          f"tokens, {args.steps} steps, {args.threads} threads, {args.device}")
    for w in results:
        print(f"  {w:<16} {med[w]:.2f} episodes/s (x{med[w] / med['trl']:.2f} TRL), "
              f"{cpu[w]:.2f} CPU s/episode (TRL / this: {cpu['trl'] / cpu[w]:.2f}), peak +"
              f"{mem[w]:.0f} MiB (x{mem[w] / max(mem['trl'], 1e-9):.2f} TRL)")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None},
                                         "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
