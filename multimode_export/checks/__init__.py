"""Checks of a written export: `inspect` (reads only), `verify` (loads, runs).

Internal: the public API is the `multimode_export` package itself.
"""
