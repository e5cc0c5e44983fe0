"""Kernel pairs: one folder each, with pre.py, retiled.py and pair.py (the declaration)."""
