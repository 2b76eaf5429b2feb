"""Backends: one module per provider, all behind `Provider.send`."""
