"""Training machinery on the Lightning Trainer: the module, the loaders and the run loop."""
