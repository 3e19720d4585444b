"""Chat backends: an OpenAI-compatible async client, a local transformers model, a
content-keyed cache; one contract (:mod:`prefkit.llm.types`) for judges, the arena and RL."""
