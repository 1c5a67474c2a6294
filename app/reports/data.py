"""What one explanation report shows (built by report.collect, drawn by html.page_html).

Its own module so the markup (html.py) and the writer (report.py) share it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from ...models.explain.types import Explanation


@dataclass
class ReportData:
    """Everything one report shows."""

    dataset: str
    user: str
    explanation: Explanation
    events: pd.DataFrame                      # the user's full history (canonical columns)
    generated: str = field(default_factory=lambda: datetime.now(UTC).strftime(
        "%Y-%m-%d %H:%M UTC"))
