"""Stage 2: rebuild the model's environment with uv and predict on its input example."""
