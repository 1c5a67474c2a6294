"""How individual users change: interest drift and churn risk."""
