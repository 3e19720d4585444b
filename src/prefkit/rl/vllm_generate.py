"""vLLM as the sampler of :func:`prefkit.rl.train.train_rl` (``generator="vllm"``, CLI
``--generator vllm``), behind the interface of :func:`prefkit.rl.generate.sample`: the same
:class:`~prefkit.rl.generate.SamplingConfig` in, the same
:class:`~prefkit.rl.generate.Samples` out (prompt-major token ids, masks up to EOS or a
stop string, the sampling policy's per-token log-probs, texts, truncation).

**Untested on these machines**: vLLM needs a GPU and is not installed here. What runs here
is tested -- the refusal without vLLM, the translation of the options
(:func:`sampling_params_kwargs`, :func:`logprobs_mode`) and the assembly of vLLM's outputs
into :class:`Samples` (:func:`samples_from_outputs`, checked against transformers' own
draws) -- but no engine has been started by these tests.

**The engine** is colocated, as TRL 1.16's ``vllm_mode="colocate"``
(``trl/generation/vllm_generation.py``): one ``vllm.LLM`` per process on the process's GPU,
built from the model's folder with ``distributed_executor_backend="external_launcher"``,
and after every update the policy's weights are loaded into it
(``llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights``, LoRA
merged for the copy and unmerged after, peft's name prefixes stripped) and its prefix cache
reset.

**The log-probs.** prefkit's ``old_logps`` are ``log_softmax(logits / temperature)`` at the
token drawn (top-p and top-k restrict the draw only), as its training forward computes
them. vLLM returns that as ``processed_logprobs`` when top-p and top-k are off, and as
``raw_logprobs`` when the temperature is 1 (:func:`logprobs_mode`); a temperature other
than 1 together with top-p or top-k has no vLLM mode that gives it and is refused.

**Seeds.** Prompt ``p`` of a call seeded ``s`` is drawn with ``SamplingParams(seed=s + p,
n=G)``; vLLM's draws are not transformers' draws for the same seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prefkit.llm.sampling import tokenize_prompts
from prefkit.rl.generate import Samples, SamplingConfig

__all__ = [
    "VLLMGenerator",
    "logprobs_mode",
    "require_vllm",
    "samples_from_outputs",
    "sampling_params_kwargs",
]

INSTALL_HINT = ("the vLLM generator needs vllm and a GPU: `pip install vllm` on a machine "
                "with a CUDA GPU, or use the default generator (--generator transformers)")


def logprobs_mode(cfg: SamplingConfig) -> str:
    """vLLM's ``logprobs_mode`` that returns ``log_softmax(logits / temperature)`` at the
    token drawn under ``cfg`` (see the module)."""
    if cfg.top_p >= 1.0 and cfg.top_k == 0:
        return "processed_logprobs"  # temperature applied, nothing masked
    if cfg.temperature == 1.0:
        return "raw_logprobs"  # the logits as they are = divided by 1
    raise ValueError(f"with vLLM, temperature={cfg.temperature} and top_p={cfg.top_p} / "
                     f"top_k={cfg.top_k} cannot both be set: vLLM returns the log-probs "
                     "before the temperature or after top-p/top-k, and the loss needs them "
                     "after the temperature only; set temperature=1 or turn top-p and top-k "
                     "off, or use --generator transformers")


def sampling_params_kwargs(cfg: SamplingConfig, *, seed: int | None = None) -> dict[str, Any]:
    """The keyword arguments of ``vllm.SamplingParams`` for one prompt's ``G`` samples:
    ``n=G``, ``temperature``, ``top_p``, ``top_k`` (-1: off), ``max_tokens``, ``stop`` with
    the stop string kept in the output (prefkit keeps it), no penalties, the sampled
    token's log-prob only (``logprobs=0``), and ``seed``."""
    out: dict[str, Any] = {
        "n": cfg.num_generations, "temperature": cfg.temperature, "top_p": cfg.top_p,
        "top_k": cfg.top_k if cfg.top_k > 0 else -1, "min_p": 0.0,
        "repetition_penalty": 1.0, "max_tokens": cfg.max_new_tokens, "logprobs": 0,
        "skip_special_tokens": True}
    if cfg.stop:
        out["stop"] = list(cfg.stop)
        out["include_stop_str_in_output"] = True
    if seed is not None:
        out["seed"] = int(seed)
    return out


def samples_from_outputs(tokenizer: Any, prompts: Sequence[str] | Sequence[Sequence[int]],
                         completions: Sequence[Sequence[int]],
                         logprobs: Sequence[Sequence[float]], truncated: Sequence[bool],
                         cfg: SamplingConfig, *, device: Any = "cpu") -> Samples:
    """:class:`Samples` from a generator's per-completion token ids (each ending with its
    EOS or stop token, as vLLM returns them), the sampled tokens' log-probs and whether it
    ran out of ``max_new_tokens`` (vLLM's ``finish_reason == "length"``); ``N = P * G``
    completions, prompt-major."""
    g = cfg.num_generations
    if not (len(completions) == len(logprobs) == len(truncated) == len(prompts) * g):
        raise ValueError(f"{len(prompts)} prompts x {g} generations need {len(prompts) * g} "
                         f"completions, log-prob rows and flags; got {len(completions)}, "
                         f"{len(logprobs)}, {len(truncated)}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    ids, mask = tokenize_prompts(tokenizer, prompts, pad_id)
    t = max((len(c) for c in completions), default=0)
    n = len(completions)
    comp = torch.full((n, t), pad_id, dtype=torch.long)
    keep = torch.zeros((n, t), dtype=torch.bool)
    logps = torch.zeros((n, t), dtype=torch.float32)
    for i, (c, lp) in enumerate(zip(completions, logprobs, strict=True)):
        if len(lp) != len(c):
            raise ValueError(f"completion {i}: {len(c)} tokens but {len(lp)} log-probs")
        comp[i, :len(c)] = torch.tensor(list(c), dtype=torch.long)
        keep[i, :len(c)] = True
        logps[i, :len(c)] = torch.tensor([float("nan") if v is None else v for v in lp],
                                         dtype=torch.float32)
    texts = [tokenizer.decode(list(c), skip_special_tokens=True) for c in completions]
    return Samples(ids.to(device), mask.to(device), comp.to(device), keep.to(device),
                   logps.to(device), texts, torch.tensor(list(truncated), dtype=torch.bool,
                                                         device=device), g, cfg.temperature)


def require_vllm() -> Any:
    """The ``vllm`` module, or an error that names the fix (``pip install vllm``, a GPU)."""
    try:
        import vllm
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    if not torch.cuda.is_available():
        raise RuntimeError(INSTALL_HINT)
    return vllm


def _vllm_names(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The policy's weights under the names vLLM's ``load_weights`` expects (LoRA merged
    into the base layers by the caller; peft's prefixes and adapter tensors dropped), as
    TRL's ``_iter_named_params``."""
    out = []
    prefix = getattr(model, "prefix", None)  # peft: "lora_"
    for name, p in model.named_parameters():
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if prefix and prefix in name or "original_module" in name:
            continue
        name = name.replace("modules_to_save.default.", "")
        out.append((name, p.data))
    return out


class VLLMGenerator:
    """A colocated vLLM engine that samples as :func:`prefkit.rl.generate.sample` does
    (see the module; untested on these machines). ``source``: the model's folder;
    ``rank`` / ``world``: this process's place (the engine's seed is its rank)."""

    def __init__(self, source: str | None, cfg: SamplingConfig, *, rank: int = 0,
                 world: int = 1, local_rank: int = 0, gpu_memory_utilization: float = 0.3,
                 max_model_len: int | None = None) -> None:
        vllm = require_vllm()
        if source is None:
            raise ValueError("the vLLM generator loads the model from its folder: give the "
                             "model as a folder (or a Hub name), not an object")
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
        self.cfg = cfg
        self.llm = vllm.LLM(model=str(source), tensor_parallel_size=1,
                            gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=max_model_len,
                            distributed_executor_backend="external_launcher", seed=rank,
                            logprobs_mode=logprobs_mode(cfg), max_num_batched_tokens=4096)
        self._params = vllm.SamplingParams
        self.synced_step: int | None = None

    @torch.no_grad()
    def sync(self, model: nn.Module, step: int) -> None:
        """Load the policy's weights into the engine (once per ``step``) and reset its
        prefix cache."""
        if self.synced_step == step:
            return
        peft = type(model).__module__.startswith("peft")  # a PeftModel: merge for the copy
        if peft:
            model.merge_adapter()
        try:
            runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
            runner.model.load_weights(_vllm_names(model))
        finally:
            if peft:
                model.unmerge_adapter()
        self.llm.reset_prefix_cache()
        self.synced_step = step

    def sample(self, model: nn.Module, tokenizer: Any,
               prompts: Sequence[str] | Sequence[Sequence[int]],
               config: SamplingConfig | None = None, *, seed: int | None = None,
               step: int = 0) -> Samples:
        """:func:`prefkit.rl.generate.sample`'s result, drawn by vLLM (weights synced
        first)."""
        cfg = config or self.cfg
        self.sync(model, step)
        rows = [list(p) if not isinstance(p, str) else tokenizer(p)["input_ids"]
                for p in prompts]
        params = [self._params(**sampling_params_kwargs(
            cfg, seed=None if seed is None else seed + i)) for i in range(len(rows))]
        outs = self.llm.generate([{"prompt_token_ids": r} for r in rows],
                                 sampling_params=params, use_tqdm=False)
        comps, lps, trunc = [], [], []
        for o in outs:  # prompt order; its n samples in order
            for c in o.outputs:
                comps.append(list(c.token_ids))
                lps.append([next(iter(d.values())).logprob if c.token_ids[j] not in d
                            else d[c.token_ids[j]].logprob for j, d in enumerate(c.logprobs)])
                trunc.append(c.finish_reason == "length")
        device = next(model.parameters()).device
        return samples_from_outputs(tokenizer, rows, comps, lps, trunc, cfg, device=device)
