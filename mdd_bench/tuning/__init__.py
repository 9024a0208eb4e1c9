"""Tuning with equal budgets: the evaluation-recipe tuner (`recipes.py`, `mdd-bench tune-eval`)."""
