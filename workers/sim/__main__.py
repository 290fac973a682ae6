"""``python -m workers.sim``: serve the simulated provider (``--help`` lists the flags)."""

from workers.sim.cli import main

if __name__ == "__main__":
    main()
