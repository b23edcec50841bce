"""The `objectives` command line: data, tokenizers, rendering, models and the trainer."""
