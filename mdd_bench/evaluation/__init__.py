"""The yardstick: training a fresh two-tower model on a set (`training.py`), the evaluator that does it per
track and encoder pair (`evaluator.py`), retrieval metrics (`metrics.py`) and IOR/HLR scores (`scores.py`).

It knows no method and no grid: it takes a `DistilledSet` and returns numbers."""
