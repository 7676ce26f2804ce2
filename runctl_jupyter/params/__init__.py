"""Typed hyperparameters from words, never evaluated: values, `-p`/`--hyperparams`
assignments, a sweep's grids and spaces, objectives and early stop. Each module is one
of them; import from it (`from runctl_jupyter.params.values import merge_params`)."""
