"""Comparison plots: plain data computed in `data`, drawn by `draw`."""
