"""``python -m cascadec.cli``."""

from cascadec.cli import main

main()
