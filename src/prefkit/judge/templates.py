"""Judge prompts: the field's standard ones, and the user's own (Jinja).

A :class:`Template` renders chat messages from named fields and says how its answer is
read (``verdict``, see :mod:`prefkit.judge.parse`) and which label tokens carry the verdict's
probability. Standard templates, word for word from their projects:

- ``mtbench_pair``: FastChat ``pair-v2`` (``fastchat/llm_judge/data/judge_prompts.jsonl``,
  Apache-2.0), verdict ``[[A]]``/``[[B]]``/``[[C]]``;
- ``mtbench_single``: FastChat ``single-v1``, a 1-10 ``[[rating]]``;
- ``arena_hard``: arena-hard-auto's judge (``config/judge_config.yaml``, Apache-2.0),
  verdicts ``[[A>>B]]`` ... ``[[B>>A]]``;
- ``alpaca_eval``: AlpacaEval 2's ``alpaca_eval_clf_gpt4_turbo`` (Apache-2.0) in chat form, one
  token ``m`` (the output shown first) or ``M``, read from its probabilities;
- ``listwise``: K answers ranked, ``[[2>1>3]]`` (prefkit's own wording).

Fields: ``question``, ``answer_a``/``answer_b`` (pairwise: ``answer_a`` is shown first),
``answer`` (single), ``answers`` (listwise: a list), ``scale`` (single: the top grade).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["TEMPLATES", "Template", "load_template"]

Kind = Literal["pairwise", "single", "listwise"]

_MTBENCH_PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by "
    "two AI assistants to the user question displayed below. You should choose the assistant "
    "that follows the user's instructions and answers the user's question better. Your "
    "evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, "
    "creativity, and level of detail of their responses. Begin your evaluation by comparing "
    "the two responses and provide a short explanation. Avoid any positional biases and "
    "ensure that the order in which the responses were presented does not influence your "
    "decision. Do not allow the length of the responses to influence your evaluation. Do not "
    "favor certain names of the assistants. Be as objective as possible. After providing "
    "your explanation, output your final verdict by strictly following this format: "
    "\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" "
    "for a tie.")
_MTBENCH_PAIR_USER = (
    "[User Question]\n{{ question }}\n\n[The Start of Assistant A's Answer]\n{{ answer_a }}\n"
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{{ answer_b }}\n"
    "[The End of Assistant B's Answer]")
_MTBENCH_SINGLE_USER = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response "
    "provided by an AI assistant to the user question displayed below. Your evaluation should "
    "consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and "
    "level of detail of the response. Begin your evaluation by providing a short explanation. "
    "Be as objective as possible. After providing your explanation, you must rate the response "
    "on a scale of 1 to {{ scale }} by strictly following this format: \"[[rating]]\", for "
    "example: \"Rating: [[5]]\".\n\n[Question]\n{{ question }}\n\n[The Start of Assistant's "
    "Answer]\n{{ answer }}\n[The End of Assistant's Answer]")
_ARENA_HARD_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by "
    "two AI assistants to the user prompt displayed below. You will be given assistant A's "
    "answer and assistant B's answer. Your job is to evaluate which assistant's answer is "
    "better.\n\nBegin your evaluation by generating your own answer to the prompt. You must "
    "provide your answers before judging any answers.\n\nWhen evaluating the assistants' "
    "answers, compare both assistants' answers with your answer. You must identify and correct "
    "any mistakes or inaccurate information.\n\nThen consider if the assistant's answers are "
    "helpful, relevant, and concise. Helpful means the answer correctly responds to the prompt "
    "or follows the instructions. Note when user prompt has any ambiguity or more than one "
    "interpretation, it is more helpful and appropriate to ask for clarifications or more "
    "information from the user than providing an answer based on assumptions. Relevant means "
    "all parts of the response closely connect or are appropriate to what is being asked. "
    "Concise means the response is clear and not verbose or excessive.\n\nThen consider the "
    "creativity and novelty of the assistant's answers when needed. Finally, identify any "
    "missing important information in the assistants' answers that would be beneficial to "
    "include when responding to the user prompt.\n\nAfter providing your explanation, you must "
    "output only one of the following choices as your final verdict with a label:\n\n1. "
    "Assistant A is significantly better: [[A>>B]]\n2. Assistant A is slightly better: "
    "[[A>B]]\n3. Tie, relatively the same: [[A=B]]\n4. Assistant B is slightly better: "
    "[[B>A]]\n5. Assistant B is significantly better: [[B>>A]]\n\nExample output: \"My final "
    "verdict is tie: [[A=B]]\".")
_ARENA_HARD_USER = (
    "<|User Prompt|>\n{{ question }}\n\n<|The Start of Assistant A's Answer|>\n{{ answer_a }}\n"
    "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n"
    "{{ answer_b }}\n<|The End of Assistant B's Answer|>")
_ALPACA_SYSTEM = (
    "You are a highly efficient assistant, who evaluates and selects the best large language "
    "model (LLMs) based on the quality of their responses to a given instruction. This process "
    "will be used to create a leaderboard reflecting the most accurate and human-preferred "
    "answers.")
_ALPACA_USER = (
    "I require a leaderboard for various large language models. I'll provide you with prompts "
    "given to these models and their corresponding outputs. Your task is to assess these "
    "responses, and select the model that produces the best output from a human perspective."
    "\n\n## Instruction\n\n{\n    \"instruction\": \"\"\"{{ question }}\"\"\",\n}\n\n## Model "
    "Outputs\n\nHere are the unordered outputs from the models. Each output is associated with "
    "a specific model, identified by a unique model identifier.\n\n{\n    {\n        "
    "\"model_identifier\": \"m\",\n        \"output\": \"\"\"{{ answer_a }}\"\"\"\n    },\n    "
    "{\n        \"model_identifier\": \"M\",\n        \"output\": \"\"\"{{ answer_b }}\"\"\"\n    "
    "}\n}\n\n## Task\n\nEvaluate the models based on the quality and relevance of their "
    "outputs, and select the model that generated the best output. Answer by providing the "
    "model identifier of the best model. We will use your output as the name of the best "
    "model, so make sure your output only contains one of the following model identifiers and "
    "nothing else (no quotes, no spaces, no new lines, ...): m or M.\n\n## Best Model "
    "Identifier")
_LISTWISE_USER = (
    "Please act as an impartial judge and rank the {{ answers | length }} responses below to the "
    "user question from best to worst. Consider helpfulness, relevance, accuracy, depth and "
    "level of detail; ignore the order in which they are shown and their length. After a short "
    "explanation, output the ranking of the response numbers, best first, strictly in this "
    "format: \"[[2>1>3]]\".\n\n[User Question]\n{{ question }}\n"
    "{% for a in answers %}\n[The Start of Response {{ loop.index }}]\n{{ a }}\n"
    "[The End of Response {{ loop.index }}]\n{% endfor %}")


@dataclass(frozen=True)
class Template:
    """A judge prompt.

    Attributes:
        name: its name (``--template``).
        kind: ``"pairwise"``, ``"single"`` or ``"listwise"``.
        user: the user message, a Jinja template over the fields.
        system: the system message (a Jinja template too), or None.
        verdict: how the answer is parsed: ``"ab"`` (``[[A]]``, ``[[B]]``, ``[[C]]`` =
            tie), ``"arena"`` (``[[A>>B]]`` ...), ``"token"`` (the first token is a label:
            ``labels[0]`` = the answer shown first, ``labels[1]`` = the second), ``"rating"``
            (``[[7]]``), ``"ranking"`` (``[[2>1>3]]``), ``"json"`` (a JSON object with
            ``winner``/``verdict``: A, B or tie; ``rating``/``score``).
        labels: the label tokens whose probabilities make the verdict's distribution:
            pairwise (first, second, tie), single ``("1", ..., "K")``.
        max_tokens: the answer's length limit (``"token"``: 1).
        source: where the wording comes from.
    """

    name: str
    kind: Kind
    user: str
    system: str | None = None
    verdict: str = "ab"
    labels: tuple[str, ...] = ("A", "B", "C")
    max_tokens: int | None = None
    source: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def render(self, **fields: Any) -> list[dict[str, str]]:
        """The chat messages for ``fields`` (missing fields are an error, never blank)."""
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                 autoescape=False)
        values = {**self.defaults, **fields}
        try:
            msgs = []
            if self.system:
                msgs.append({"role": "system", "content": env.from_string(self.system).render(
                    **values)})
            msgs.append({"role": "user", "content": env.from_string(self.user).render(**values)})
        except jinja2.UndefinedError as e:
            raise ValueError(f"template {self.name!r}: {e.message}; its fields: "
                             f"{', '.join(sorted(self.fields()))}") from None
        return msgs

    def fields(self) -> set[str]:
        """The names the template reads."""
        import jinja2
        from jinja2 import meta

        env = jinja2.Environment()
        names: set[str] = set()
        for text in (self.system, self.user):
            if text:
                names |= meta.find_undeclared_variables(env.parse(text))
        return names


TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("mtbench_pair", "pairwise", _MTBENCH_PAIR_USER, _MTBENCH_PAIR_SYSTEM, "ab",
             ("A", "B", "C"), 2048, "FastChat pair-v2 (lm-sys/FastChat, "
             "fastchat/llm_judge/data/judge_prompts.jsonl)"),
    Template("mtbench_single", "single", _MTBENCH_SINGLE_USER, "You are a helpful assistant.",
             "rating", tuple(str(k) for k in range(1, 11)), 2048, "FastChat single-v1",
             {"scale": 10}),
    Template("arena_hard", "pairwise", _ARENA_HARD_USER, _ARENA_HARD_SYSTEM, "arena",
             ("A", "B", "A=B"), 4096, "arena-hard-auto config/judge_config.yaml"),
    Template("alpaca_eval", "pairwise", _ALPACA_USER, _ALPACA_SYSTEM, "token", ("m", "M"), 1,
             "AlpacaEval 2 alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt"),
    Template("listwise", "listwise", _LISTWISE_USER, None, "ranking", (), 2048, "prefkit"),
)}


def load_template(name_or_path: str | Path, *, kind: Kind | None = None) -> Template:
    """A standard template by name, or the user's own from a file: a ``.json`` file with
    the :class:`Template` fields (``user`` required), or any other text file whose content is
    the user message (``kind`` pairwise by default; its verdict ``[[A]]``/``[[B]]``/``[[C]]``,
    a single one ``[[rating]]`` on 1-10)."""
    if str(name_or_path) in TEMPLATES:
        return TEMPLATES[str(name_or_path)]
    p = Path(name_or_path)
    if not p.is_file():
        raise ValueError(f"unknown template {str(name_or_path)!r}: give one of "
                         f"{', '.join(TEMPLATES)} or a template file (.json, or a Jinja text)")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: malformed JSON ({e.msg}, line {e.lineno}); a template "
                             "file holds one JSON object such as {\"user\": \"...\"}, or is "
                             "a Jinja text file (any other extension)") from None
        if not isinstance(spec, dict) or "user" not in spec:
            raise ValueError(f"{p}: a template file holds a JSON object with at least 'user' "
                             "(and optionally name, kind, system, verdict, labels, max_tokens)")
        spec.setdefault("name", p.stem)
        spec.setdefault("kind", kind or "pairwise")
        if "labels" in spec:
            spec["labels"] = tuple(spec["labels"])
        unknown = set(spec) - set(Template.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{p}: unknown template field(s) {', '.join(sorted(unknown))}")
        t = Template(**spec)
    else:
        k: Kind = kind or "pairwise"
        verdict = {"pairwise": "ab", "single": "rating", "listwise": "ranking"}[k]
        labels = {"pairwise": ("A", "B", "C"), "single": tuple(str(i) for i in range(1, 11)),
                  "listwise": ()}[k]
        t = Template(p.stem, k, text, None, verdict, labels, None, str(p),
                     {"scale": 10} if k == "single" else {})
    if t.kind not in ("pairwise", "single", "listwise"):
        raise ValueError(f"{p}: kind must be pairwise, single or listwise, got {t.kind!r}")
    import jinja2

    try:
        read = t.fields()
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"{p}: not a valid Jinja template ({e.message}, line {e.lineno}); "
                         "write fields as {{ question }}") from None
    # a template that never shows the answers would send one prompt for every item
    missing = [f for f in _ANSWER_FIELDS[t.kind] if f not in read]
    if missing:
        shown = " and ".join("{{ " + f + " }}" for f in missing)
        raise ValueError(f"{p}: the {t.kind} template never reads {', '.join(missing)}; "
                         f"write {shown} where the answers go")
    return t


_ANSWER_FIELDS = {"pairwise": ("answer_a", "answer_b"), "single": ("answer",),
                  "listwise": ("answers",)}
