"""The `clv` command: one Typer app, one module per group. Nothing imports it."""
