"""`python -m edx_engine` runs the CLI."""

from .cli import main

main()
