"""The `prefkit` command: one thin module per verb (no math, no SQL here)."""

from __future__ import annotations

import typer

from prefkit import __version__
from prefkit.cli.align import _EXAMPLES as _ALIGN_EXAMPLES
from prefkit.cli.align import align_command
from prefkit.cli.diagnose import diagnose
from prefkit.cli.matchmaking import propose, simulate
from prefkit.cli.rank import rank
from prefkit.cli.reward import reward_app
from prefkit.cli import reward_finetune as _reward_finetune  # noqa: F401  (registers the command)

app = typer.Typer(
    name="prefkit",
    help="Learn from preferences: rank items from votes with honest uncertainty, train and "
         "evaluate reward models, align language models from preference pairs.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)

app.command(epilog="")(rank)
app.command()(diagnose)
app.command()(propose)
app.command()(simulate)
app.add_typer(reward_app, name="reward")
app.command(name="align", epilog=_ALIGN_EXAMPLES)(align_command)


@app.command()
def formats() -> None:
    """List the input formats that `prefkit rank` reads (auto-detected, or named with --format).

    Examples:

      prefkit formats
    """
    from prefkit.data import describe_formats

    typer.echo(describe_formats())


@app.command()
def version() -> None:
    """Print prefkit's version.

    Examples:

      prefkit version
    """
    typer.echo(__version__)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
