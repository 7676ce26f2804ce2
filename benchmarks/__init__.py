"""Benchmarks of runctl-jupyter against the tools users would pick instead (issue 9).

    python -m benchmarks            # every benchmark; writes benchmarks/results.json + docs/benchmarks.md
    python -m benchmarks --quick    # smoke mode (small sizes, few repetitions), results to a temp file
    python -m benchmarks --only log_step
    python -m benchmarks --setup    # create the peers' venv (mlflow, wandb) under benchmarks/.work/

Each benchmark is one module with a `run(ctx) -> dict[str, Result]`. Peers
(mlflow, wandb) run in a separate venv as a long-lived worker process
(benchmarks/peer_worker.py), so they are never imported by the package nor by
the harness process, and A/B repetitions still alternate within one run.

This package must stay light to import: peer_worker.py imports it from the peers' venv.
"""
