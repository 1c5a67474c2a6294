"""TrailScope models: per-user sequences, next-item recommenders, evaluation, explanations."""
