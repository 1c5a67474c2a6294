"""The built-in sample data: a generated city and its residents' events."""
