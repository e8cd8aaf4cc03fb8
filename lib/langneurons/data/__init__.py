"""Stage 1, data: the languages, the labelled text sets and where they come from (bundled corpus, the hub, the original release)."""
