"""Tuning with equal budgets: `mdd-bench tune` (`tune.py`, `studies.py`, `trial.py`: the same seeded TPE
trials for every method) and the evaluation-recipe tuner (`recipes.py`, `mdd-bench tune-eval`)."""
