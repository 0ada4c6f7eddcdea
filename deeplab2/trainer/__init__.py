"""Training: the CLI, the run modes, the train step, optimizers and schedules."""
