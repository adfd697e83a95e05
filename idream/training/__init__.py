"""Training on a time budget: the loop, its resumable state, the schedule, devices and torchrun."""
