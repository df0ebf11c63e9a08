"""The search over recipes: its space, its Optuna study, the trials, the workers."""
