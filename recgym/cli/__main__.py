"""``python -m recgym.cli``: the same as the ``recgym`` console script."""

from recgym.cli import main

main()
