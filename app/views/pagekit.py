"""Helpers the pages share: resolving the dataset a page shows.

Kept outside app/pages so Dash's page loader does not import it as a page.
"""

from __future__ import annotations

from typing import Any

from ..services import workspace as services
from . import ui


def resolve(dataset: Any) -> tuple[str | None, list[Any]]:
    """The dataset a page shows for its ``?dataset=`` value, plus notices to show above it.

    Dash passes a repeated query parameter as a list; the first value wins.
    """
    requested = dataset[0] if isinstance(dataset, list) and dataset else dataset
    requested = requested if isinstance(requested, str) and requested else None
    shown = services.resolve_dataset(requested)
    notes = [ui.dataset_not_found(requested, shown)] if requested and requested != shown else []
    return shown, notes
