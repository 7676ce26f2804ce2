"""Sweeps: many runs over a search space, from one cell (docs/sweeps.md).

- api.py: `sweep()` / `sweeps()` / `show()` / `lookup()`, what Session.sweep and Session.sweeps call
- results.py: one-line summaries, trial rows, `runctl sweeps` and `runctl show SWEEP` tables
- watch.py: following a sweep live (SweepPanel in a kernel, text in a terminal)
- record.py: the sweep folder (sweep.json + sweep.jsonl), ids, lookup
- space.py: grid, random and optuna trial parameters
- scheduler.py: the scheduler process (max-parallel, failures, pruning, resume)
- pruning.py: median and ASHA across trials
"""
