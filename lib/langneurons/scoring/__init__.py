"""Stage 3, scoring: average precision of every unit per language, the selections, and where they sit."""
