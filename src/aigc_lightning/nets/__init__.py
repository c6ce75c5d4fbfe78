"""Plain ``nn.Module`` networks (no Lightning import, no losses)."""
