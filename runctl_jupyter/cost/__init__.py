"""Cost before and after a run, notebook side. The meter and the per-run `--cost-limit`
during a run live next to the code, on the instance: agent/cost.py.

    prices.py          EC2, EBS and S3 prices: the Pricing API, spot history, the bundled table
    facts.py           a run's price facts (spec["target"]["price"]), what its agent meters with
    estimate.py        the estimate before launch, and --yes above c.Runctl.confirm_above
    monthly_budget.py  c.Runctl.monthly_budget, checked before each launch
    sweep_budget.py    a sweep's --cost-limit, enforced by its scheduler
    spent.py           what a run spent (its last `cost` event), the success line's phrase
    report.py          `runctl cost` and `runctl cost price`
    resource_costs.py  what each resource `runctl resources` lists costs (instances, volumes,
                       snapshots, the bucket)
"""
