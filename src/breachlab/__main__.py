"""``python -m breachlab`` — the same as the ``breachlab`` command."""

from breachlab.cli import main

main()
