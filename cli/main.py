"""The CLI root: `clv` with one group per component.

Component command modules are imported here and nowhere else upstream; each keeps its heavy
imports inside its commands so that `clv --help` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

import click
import typer

from clv.core.console import CliState
from clv.core.dependencies import skip_feast_typechecks
from clv.core.errors import ClvError

app = typer.Typer(
    name="clv",
    help="Customer Lifetime Value: data -> features -> train -> registry -> serve -> monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Path | None = typer.Option(
        None,
        "--workspace",
        "-w",
        envvar="CLV_WORKSPACE",
        help="Folder holding clv.yaml, .clv/ state and reports/ (default: current directory).",
    ),
) -> None:
    """Customer Lifetime Value, from transaction logs to decisions."""
    ctx.obj = CliState(workspace=workspace)


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    from clv.cli import data as data_cli
    from clv.cli import decisions as decisions_cli
    from clv.cli import features as features_cli
    from clv.cli import monitoring as monitoring_cli
    from clv.cli import registry as registry_cli
    from clv.cli import serving as serving_cli
    from clv.cli import training as training_cli
    from clv.jobs import demo

    app.add_typer(data_cli.app, name="data")
    app.add_typer(features_cli.app, name="features")
    app.command("train")(training_cli.train)
    app.add_typer(registry_cli.app, name="registry")
    app.command("serve")(serving_cli.serve)
    app.command("score")(serving_cli.score)
    app.add_typer(monitoring_cli.app, name="monitor")
    app.command("retrain")(monitoring_cli.retrain)
    app.add_typer(decisions_cli.app, name="analyze")
    app.add_typer(decisions_cli.decide_app, name="decide")
    app.command("demo")(demo.demo)


def _quiet_libraries() -> None:
    """Library deprecation chatter is not for users; CLV_DEBUG=1 shows it."""
    if os.environ.get("CLV_DEBUG"):
        return
    warnings.simplefilter("ignore")
    # Feast re-adds "once" filters when imported; silence the printing itself instead.
    warnings.showwarning = lambda *args, **kwargs: None
    for name in ("mlflow", "feast", "alembic", "optuna", "evidently", "litestar"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; failures print one line (`error: ...`) and exit non-zero."""
    _quiet_libraries()
    if not os.environ.get("CLV_DEBUG"):  # a debugging run keeps Feast's argument checks
        skip_feast_typechecks()
    _register()
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="clv", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ClvError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except Exception as exc:
        if os.environ.get("CLV_DEBUG"):
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(
            f"error: {type(exc).__name__}: {first} (set CLV_DEBUG=1 for the traceback)",
            err=True,
        )
        return 1
    return rv if isinstance(rv, int) else 0


def run() -> None:
    sys.exit(main())
