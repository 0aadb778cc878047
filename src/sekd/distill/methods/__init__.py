"""One module per distillation method; the module name is the registry key."""
