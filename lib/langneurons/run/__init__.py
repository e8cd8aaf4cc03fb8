"""Stage 5, run: params, the pipeline of notebooks, caching and resuming, figures and reports."""
