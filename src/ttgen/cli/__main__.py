"""`python -m ttgen.cli`: the `ttgen` command."""

from ttgen.cli import main

main()
