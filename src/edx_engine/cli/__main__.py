"""`python -m edx_engine.cli` runs the CLI (as `python -m edx_engine` does)."""

from . import main

main()
