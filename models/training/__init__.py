"""Training, evaluation, metrics, checkpoints and the score-part blend."""
