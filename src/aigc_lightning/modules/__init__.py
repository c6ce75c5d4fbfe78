"""LightningModules: the training algorithms. Networks and optimizer factories are injected by config."""
