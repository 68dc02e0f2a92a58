"""Wire formats spoken by the simulated provider (one module per provider family)."""
