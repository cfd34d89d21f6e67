"""`python -m irpo`: the `irpo` command."""

from irpo.cli import main

main()
