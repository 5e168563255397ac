"""Integrations: `MultiModeExporter` for `train_and_evaluate`, the command line and its demo.

Internal: the public API is the `multimode_export` package itself.
"""
