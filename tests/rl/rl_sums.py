"""A tiny Llama taught the format of a checkable task (single-digit sums) by a few SFT
steps on noisy answers -- right half the time -- so that it answers in the format but is
often wrong: the start every RL test improves on. Built from a config, no download."""

from __future__ import annotations

import torch

from prefkit.align.tiny import char_tokenizer, tiny_llama

PROMPTS = [f"{a}+{b}=" for a in range(5) for b in range(5)]
ANSWERS = [str(a + b) for a in range(5) for b in range(5)]


def sft_noisy_sums(steps: int = 300, seed: int = 0, p_right: float = 0.5, lr: float = 3e-3):
    """(model, tokenizer) after ``steps`` full-batch SFT steps on the 25 sums, each target
    the right answer with probability ``p_right``, else a random digit (then EOS)."""
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        ids, labels = [], []
        for p, a in zip(PROMPTS, ANSWERS, strict=True):
            right = bool(torch.rand(1, generator=g) < p_right)
            ans = a if right else str(int(torch.randint(0, 10, (1,), generator=g)))
            x = tok(p)["input_ids"]
            y = tok(ans, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids.append(x + y)
            labels.append([-100] * len(x) + y)
        width = max(map(len, ids))
        input_ids = torch.tensor([r + [0] * (width - len(r)) for r in ids])
        target = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
        loss = model(input_ids=input_ids, attention_mask=(input_ids != 0).long(),
                     labels=target).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok


def sums_reward(prompts, completions, answer, **kwargs):
    """TRL's signature: 1 where the completion is exactly the sum."""
    return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]
