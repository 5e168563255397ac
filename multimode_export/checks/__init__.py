"""Checks of a written export: `inspect` (reads only) and `verify` (loads and runs).

Internal: the public API is the `multimode_export` package itself.
"""
