"""Per-provider capability tables (one module per provider kind, each calling
:func:`interlock.providers.capabilities.register`). See docs/providers.md."""
