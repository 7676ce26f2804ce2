"""Cost before and after a run, notebook side: prices (Pricing API, spot history,
the bundled table), the estimate before launch, budgets, the `runctl cost` report.
The meter and `--cost-limit` during a run live next to the code: agent/cost.py."""
