"""`python -m reasonlab ...`: the same CLI, for launchers that take a module (accelerate launch -m)."""

from reasonlab.cli import main

main()
