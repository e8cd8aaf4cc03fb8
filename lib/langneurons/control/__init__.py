"""Stage 4, control: forcing units during generation and translation, and measuring the language of what is written."""
