"""``python -m unilk`` runs the command line."""

from unilk.cli import main

main()
