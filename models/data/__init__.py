"""From stored events to model inputs: filtering, indexing, splits, batches, one user's history."""
