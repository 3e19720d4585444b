"""The `prefkit` command: one thin module per verb (no math, no SQL here).

A verb's module is imported, and its command built, only when that verb runs (or prints
its own help): `prefkit --help` lists every verb from the table below without importing
any of them, so it costs typer's own start-up and little more.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any

#: verbs whose numerical work is many small dense systems (a Newton step over ~100 items, a
#: thousand bootstrap refits): OpenBLAS's worker threads spin between such calls and cost
#: more CPU than they save (on the 1.67M Arena votes, 0.3 s of 1.1 s CPU for a fit-only run
#: and 0.4 s of the default run; benchmarks/cli_speed.py). They run BLAS on one thread
#: unless the user set a thread count; numpy reads it when it is first imported, below.
_ONE_BLAS_THREAD = frozenset({"rank", "diagnose", "propose", "simulate"})
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
if (len(sys.argv) > 1 and sys.argv[1] in _ONE_BLAS_THREAD and "numpy" not in sys.modules
        and not any(os.environ.get(v) for v in _BLAS_THREADS)):
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from prefkit import __version__  # noqa: E402
from prefkit.cli import _coerce  # noqa: E402

_coerce.install()  # plain values without a pydantic schema per parameter (~0.15 s)

#: verb -> (module, attribute, the first paragraph of its help as `prefkit --help` shows it,
#: settings of its command given the imported module). An attribute that is a ``typer.Typer``
#: is a group of sub-verbs. tests/test_imports.py checks each line against the real help.
_VERBS: dict[str, tuple[str, str, str, Callable[[Any], dict[str, Any]]]] = {
    "rank": ("prefkit.cli.rank", "rank",
             "Rank items from pairwise or K-wise votes; print the leaderboard with intervals.",
             lambda m: {}),
    "diagnose": ("prefkit.cli.diagnose", "diagnose",
                 "Check vote data before ranking: components of the comparison graph, votes per "
                 "item and pair, cyclic triads against what Bradley-Terry predicts, annotator "
                 "influence.",
                 lambda m: {}),
    "propose": ("prefkit.cli.matchmaking", "propose",
                "Propose the next pairs (or K-sets) whose votes most reduce the uncertainty of "
                "the ranking, from a Bradley-Terry fit of the votes so far.",
                lambda m: {}),
    "simulate": ("prefkit.cli.matchmaking", "simulate",
                 "Simulate an arena on known strengths (fitted to real votes) and count the "
                 "votes that active matchmaking, random pairing (Bradley-Terry fit) and online "
                 "Elo (K=4) need to rank the items to a target Kendall tau.",
                 lambda m: {}),
    "inspect": ("prefkit.cli.inspect", "inspect",
                "Inspect annotated preference pairs, human or AI: agreement (kappa, alpha, "
                "accuracy against gold), duplicates and contradictions, position and length "
                "bias, cyclic triads, annotators against the consensus, reward-ensemble "
                "strength, ranking accuracy.",
                lambda m: {}),
    "align": ("prefkit.cli.align", "align_command",
              "Fine-tune a causal language model from preferences (DPO and its family, "
              "SimPO/ORPO, KTO, token-level DPO, listwise Plackett-Luce).",
              lambda m: {"epilog": m._EXAMPLES}),
    "arena": ("prefkit.cli.arena", "arena_app",
              "Run an arena: people vote double-blind between model outputs, the leaderboard "
              "updates live (SQLite or PostgreSQL).",
              lambda m: {}),
    "judge": ("prefkit.cli.judge", "judge_app",
              "LLM judges: judge answer pairs with a model in both presentation orders "
              "(cached), and measure recorded verdicts' consistency, bias and agreement with "
              "people.",
              lambda m: {}),
    "rl": ("prefkit.cli.rl", "rl_command",
           "Train a causal language model online from rewards (GRPO and its Dr. GRPO / DAPO "
           "variants, RLOO, REINFORCE++, PPO, online DPO).",
           lambda m: {"epilog": m._EXAMPLES}),
    # reward_finetune adds `finetune` to the group defined in prefkit.cli.reward
    "reward": ("prefkit.cli.reward_finetune", "reward_app",
               "Reward models on a frozen text encoder: train on chosen/rejected pairs, "
               "evaluate against human preferences, score responses.",
               lambda m: {}),
    "prm": ("prefkit.cli.prm", "prm_app",
            "Process reward models: train on step-labelled solutions, evaluate with "
            "ProcessBench's F1, score steps, pick the best of N candidates.",
            lambda m: {}),
}
_SETTINGS: dict[str, Any] = {"no_args_is_help": True, "add_completion": False,
                             "rich_markup_mode": "markdown", "pretty_exceptions_enable": False}


def examples_last(function: Callable[..., Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Every command shows its examples after its options: an ``Examples:`` part of the
    docstring moves to the epilog (unless the command has one)."""
    doc = function.__doc__ or ""
    if "Examples:" in doc and not settings.get("epilog"):
        head, _, tail = doc.partition("Examples:")
        settings = {**settings, "help": inspect.cleandoc(head) + "\n",
                    "epilog": "Examples:\n\n" + textwrap.dedent(tail).strip() + "\n"}
    return settings


def _build(name: str) -> Any:
    """The click command of one verb, as `app.command(...)(function)` would make it."""
    module_name, attribute, _, settings = _VERBS[name]
    module = importlib.import_module(module_name)
    obj = getattr(module, attribute)
    if isinstance(obj, typer.Typer):  # a group: its own completion options stay off
        command = typer.main.get_group(obj)
    else:
        one = typer.Typer(**_SETTINGS)
        one.command(name=name, **examples_last(obj, settings(module)))(obj)
        command = typer.main.get_command(one)
    command.name = name
    return command


class _Verbs(TyperGroup):
    """Lists the verbs of :data:`_VERBS` with their one-line help, builds one on use."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        eager = [n for n in self.commands if n not in _VERBS]
        return [*(n for n in _VERBS if n != "reward"), *eager, "reward"]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in _VERBS:
            return self.commands.get(cmd_name)
        if self._listing:  # `prefkit --help`: the name and help line are enough
            return typer.core.TyperCommand(name=cmd_name, help=_VERBS[cmd_name][2])
        self.commands[cmd_name] = _build(cmd_name)
        return self.commands[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as e:  # an unknown verb: suggest from all of them
            message = getattr(e, "message", "")
            if args and message.startswith("No such command"):
                from difflib import get_close_matches

                matches = get_close_matches(args[0], self.list_commands(ctx))
                base = message.split(". Did you mean")[0].rstrip(".")
                e.message = (f"{base}. Did you mean {', '.join(repr(m) for m in matches)}?"
                             if matches else f"{base}.")
            raise

_TOP_EXAMPLES = """Examples:

  prefkit rank                       # the embedded Chatbot Arena votes

  prefkit rank votes.csv --plot board.png

  prefkit reward train pairs.jsonl --output runs/rm

  prefkit align --loss dpo --model ./my-llama --data prefs.jsonl --output runs/dpo

  prefkit formats                    # what each command reads

  prefkit COMMAND --help             # one command's options and examples
"""

app = typer.Typer(
    name="prefkit",
    help="Learn from preferences: rank items from votes with honest uncertainty, train and "
         "evaluate reward models, align language models from preference pairs.",
    epilog=_TOP_EXAMPLES,
    cls=_Verbs,
    **_SETTINGS,
)


@app.command(epilog="Examples:\n\n  prefkit formats\n")
def formats() -> None:
    """List every input format prefkit reads, grouped by the commands that read them (auto-detected, or named with --format)."""
    from prefkit.data import describe_formats

    typer.echo(describe_formats())
    typer.echo("\nEach is read from a CSV, JSONL, JSON or Parquet file (.gz for the text ones), "
               "or from a folder written by datasets' save_to_disk (a DatasetDict: one split's "
               "folder, e.g. data/train).")


@app.command(epilog="Examples:\n\n  prefkit version\n")
def version() -> None:
    """Print prefkit's version."""
    typer.echo(__version__)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
