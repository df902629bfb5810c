"""`python -m clv` is the `clv` command."""

from clv.cli.main import run

run()
