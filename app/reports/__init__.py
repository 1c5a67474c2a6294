"""Exportable explanation reports (HTML and PDF)."""
