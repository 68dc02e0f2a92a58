"""What each provider publishes about its API, as validators the simulated provider and the
conformance tests share (one module per provider: it refuses what the provider's published
spec refuses)."""
