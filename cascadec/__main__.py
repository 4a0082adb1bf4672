"""``python -m cascadec``: the command line (`cascadec.cli`)."""

from cascadec.cli import main

main()
