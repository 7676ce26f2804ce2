"""Sweeps: many runs over a search space, from one cell (docs/sweeps.md).

- api.py: `sweep()` / `sweeps()` / `show()` / `lookup()`, what Session.sweep and Session.sweeps call
- handle.py: `Sweep`, the handle a sweep call returns
- settings.py: what the user asked, checked into the sweep's settings and trial plan
- create.py: a new sweep's folder (code, objects, env.json, sweep.json)
- results.py: one-line summaries, trial rows, `runctl sweeps` and `runctl show SWEEP` tables
- watch.py: following a sweep live (SweepPanel in a kernel, text in a terminal)
- record.py: the sweep folder (sweep.json + sweep.jsonl), ids, lookup
- space.py: grid, random and optuna trial parameters
- scheduler.py: the scheduler process and its loop (max-parallel, stop, budget, resume)
- launching.py: the scheduler starting trials (free slots, run folders, cut-short launches)
- judging.py: the scheduler judging trials (objective, failures, pruning)
- pruning.py: median and ASHA across trials
"""
