"""`mdd-bench run` and `mdd-bench ablate`: the grid of cells (`grid.py`, `ablations.py`), one cell's work
(`cell.py`) under its lock with failures isolated (`execute.py`), the executors (local, Ray), the dry run,
and what a result records of where it came from. The shared types are in `jobs.py` and `config.py`."""
