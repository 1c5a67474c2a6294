"""The next-item models, one per module, and the explicit registry of them."""
