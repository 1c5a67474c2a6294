"""The HTTP API under ``/api/v1`` (Flask blueprint and its OpenAPI document)."""
