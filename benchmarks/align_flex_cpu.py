"""CPU time of one forward (+ backward) of packed prompt-tree rows: SDPA with the boolean 4D
mask against FlexAttention with :meth:`prefkit.align.packing.PackedBatch.block_mask`.

Nothing here is part of prefkit; it measures what ``prefkit align --attention flex`` changes,
on a CPU, where that path can only be run in part: torch (2.11-2.13) has no FlexAttention
backward on a CPU, so

* ``sdpa``       -- the default: SDPA (a 4D boolean mask), forward + backward;
* ``flex_eager`` -- flex_attention's eager (reference) implementation, forward + backward,
  torch's CPU device check lifted as in tests/align/test_flex_attention.py (what the CPU
  tests run; it materialises the scores, so it says nothing about the GPU kernel);
* ``sdpa_nograd`` / ``flex_compiled_nograd`` -- forward only without gradients (a reference
  pass), flex as transformers calls it (compiled by inductor; the first call, which compiles,
  is left out and reported apart).

Rows: prompts of 150-250 random token ids, each with 2 responses of 50-150 (8 prompt trees,
``mode="prefix"``); models: ``tiny`` (prefkit.align.tiny.tiny_llama: hidden 32, 2 layers,
vocab 103) and ``small`` (hidden 256, 4 layers, 8 heads on 2 key/value heads). One thread.
Every measurement is interleaved with the others and repeated (``--repeats``); the median
wall and CPU time are printed side by side with the ratio to ``sdpa``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/align_flex_cpu.py     # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch


def examples(n: int, seed: int) -> list[Any]:
    from prefkit.align.data import AlignExample

    g = torch.Generator().manual_seed(seed)

    def ids(lo: int, hi: int) -> list[int]:
        k = int(torch.randint(lo, hi, (1,), generator=g))
        return torch.randint(3, 100, (k,), generator=g).tolist()

    return [AlignExample([1] + ids(150, 250), [ids(50, 150), ids(50, 150)]) for _ in range(n)]


def measure(size: str, over: dict[str, Any], batch: Any, block: Any, repeats: int) -> None:
    """Print the median wall / CPU times of the four cases on one model."""
    import torch.nn.attention.flex_attention as fa
    from transformers.integrations import flex_attention as hf_flex

    from prefkit.align.tiny import tiny_llama

    compiled, check = hf_flex.compile_friendly_flex_attention, fa._validate_device
    sdpa = tiny_llama(103, seed=0, **over).train()
    flex = tiny_llama(103, seed=0, **over).train()
    flex.set_attn_implementation("flex_attention")
    dense = batch.attention_mask()

    def eager(query: Any, key: Any, value: Any, training: bool = False, **kw: Any) -> Any:
        return fa.flex_attention(query, key, value, **kw)

    def run(model: Any, mask: Any, grad: bool) -> Any:
        with torch.set_grad_enabled(grad):
            out = model.model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                              attention_mask=mask, use_cache=False).last_hidden_state
            if grad:
                out.float().pow(2).mean().backward()
        return out.detach()

    def flex_eager_grad() -> Any:  # torch's CPU check lifted, eager flex, then restored
        fa._validate_device, hf_flex.compile_friendly_flex_attention = (lambda *a: None), eager
        try:
            return run(flex, block, True)
        finally:
            fa._validate_device, hf_flex.compile_friendly_flex_attention = check, compiled

    cases = {
        "sdpa": lambda: run(sdpa, dense, True),
        "flex_eager": flex_eager_grad,
        "sdpa_nograd": lambda: run(sdpa, dense, False),
        "flex_compiled_nograd": lambda: run(flex, block, False),
    }
    t0 = time.perf_counter()
    got = cases["flex_compiled_nograd"]()  # the compilation
    first = time.perf_counter() - t0
    diff = float((got - cases["sdpa_nograd"]()).abs().max())
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - w, time.process_time() - c))
    n = sum(p.numel() for p in sdpa.parameters())
    print(f"\n{size} ({n / 1e6:.2f}M parameters); flex compile (first no-grad call) "
          f"{first:.1f} s; compiled flex vs SDPA hidden states max |diff| {diff:.1e}")
    for name, ts in times.items():
        w = statistics.median(x for x, _ in ts)
        c = statistics.median(x for _, x in ts)
        base = "sdpa_nograd" if "nograd" in name else "sdpa"
        ref = statistics.median(x for x, _ in times[base])
        print(f"  {name:22s} wall {1000 * w:9.1f} ms  CPU {1000 * c:9.1f} ms  "
              f"{w / ref:5.2f}x {base}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from prefkit.align.packing import pack_examples

    batch = pack_examples(examples(args.prompts, 0), 0, mode="prefix")
    rows, width = batch.input_ids.shape
    print(f"{args.prompts} prompt trees in {rows} rows of {width} tokens; torch "
          f"{torch.__version__}, 1 thread; median of {args.repeats}")
    sizes = {"tiny": {}, "small": {"hidden_size": 256, "intermediate_size": 768,
                                   "num_hidden_layers": 4, "num_attention_heads": 8,
                                   "num_key_value_heads": 2}}
    t0 = time.perf_counter()
    block = batch.block_mask()
    print(f"BlockMask built in {1000 * (time.perf_counter() - t0):.1f} ms")
    for size, over in sizes.items():
        measure(size, over, batch, block, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
