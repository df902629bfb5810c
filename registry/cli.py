"""`clv registry`: list versions, show one, promote one, and which version holds which alias."""

from __future__ import annotations

import typer

from clv.console import JsonOption, emit, settings_of

app = typer.Typer(help="Registered model versions and their aliases.", no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Every registered version, newest first, with headline test metrics."""
    from registry.mlflow_io import list_versions

    settings = settings_of(ctx)
    versions = list_versions(settings)
    lines = [f"model {settings.mlflow.model_name}: {len(versions)} version(s)"]
    for v in versions:
        gini = v.metrics.get("test_gini", float("nan"))
        tag = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        lines.append(
            f"  v{v.version}{tag}  {v.created:%Y-%m-%d %H:%M}  gini {gini:.3f}  run {v.run_id}"
        )
    emit(
        "\n".join(lines),
        {"model": settings.mlflow.model_name, "versions": [v.as_dict() for v in versions]},
        as_json=as_json,
    )


@app.command("show")
def show(
    ctx: typer.Context, version: str = typer.Argument(...), as_json: bool = JsonOption
) -> None:
    """One version: its run, aliases, metrics and parameters."""
    from registry.mlflow_io import version_info

    info = version_info(settings_of(ctx), version)
    lines = [
        f"version {info.version}  run {info.run_id}  aliases: {', '.join(info.aliases) or '-'}",
        f"created {info.created:%Y-%m-%d %H:%M} UTC  status {info.status}",
        *(f"  {k} = {v:.4g}" for k, v in sorted(info.metrics.items())),
    ]
    emit("\n".join(lines), info.as_dict(detail=True), as_json=as_json)


@app.command("promote")
def promote(
    ctx: typer.Context, version: str = typer.Argument(...), as_json: bool = JsonOption
) -> None:
    """Point the champion alias at VERSION."""
    from registry.aliases import promote as promote_version

    decision = promote_version(settings_of(ctx), version)
    emit(
        decision.reason,
        {
            "alias": decision.alias,
            "version": decision.version,
            "changed": decision.assign,
            "reason": decision.reason,
        },
        as_json=as_json,
    )


@app.command("status")
def status(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Which version holds which alias."""
    from registry.mlflow_io import aliases

    settings = settings_of(ctx)
    held = aliases(settings)
    name = settings.mlflow.model_name
    summary = (
        "\n".join(f"{alias}: version {v}" for alias, v in held.items())
        if held
        else f"model {name}: no aliases yet (run `clv train`)"
    )
    emit(summary, {"model": name, "aliases": held}, as_json=as_json)
