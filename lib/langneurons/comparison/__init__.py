"""Notebook 07, AP vs LAPE: the matched unit sets, their forcing and deactivation effects, and the figures."""
