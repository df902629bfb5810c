"""`python -m clv` is the `clv` command."""

from clv.cli import run

run()
