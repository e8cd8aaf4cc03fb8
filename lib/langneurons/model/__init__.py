"""Stage 2, model: loading a causal LM, finding its units, and collecting their mean responses; the tiny default model."""
