"""Integrations: `MultiModeExporter` for `train_and_evaluate`, the CLI, demo.

Internal: the public API is the `multimode_export` package itself.
"""
