"""The bottom layer: params, paths, atomic writes, checksums, kernel pins, fault injection, batch halving.

Imports nothing from the stages (data, model, scoring, control, comparison, run); every other layer may import it.
"""
