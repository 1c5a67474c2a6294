"""Every Dash component id used by the app shell and the pages, in one place.

Ids are plain strings (or the ``type`` part of a pattern-matching dict id) so a rename is a
one-line change and the browser tests and assets/upload.js can refer to the same names.
assets/upload.js spells UPLOAD_SLOT, UPLOAD_INPUT, UPLOAD_PROGRESS, UPLOAD_PROGRESS_BAR,
UPLOAD_STATUS, UPLOAD_CANCEL and UPLOAD_STORE by value: keep them in sync.
"""

from __future__ import annotations

# -- shell (app/layout.py) ---------------------------------------------------------------
URL = "shell-url"
NAVBAR = "shell-navbar"
DATASET_DROPDOWN = "shell-dataset-dropdown"
DATASET_STORE = "shell-dataset-store"  # the selected dataset name (str | None)
CATALOG_VERSION = "shell-catalog-version"  # bumped whenever a dataset is imported or dropped
NAV_LINK = "shell-nav-link"  # prefix: f"{NAV_LINK}-{page}"

#: Pages in navigation order: (key, label, path).
PAGES: tuple[tuple[str, str, str], ...] = (
    ("data", "Data", "/data"),
    ("overview", "Overview", "/overview"),
    ("map", "Map", "/map"),
    ("users", "Users", "/users"),
    ("models", "Models", "/models"),
    ("explain", "Explain", "/explain"),
)


def nav_link(page: str) -> str:
    """Id of the navigation link of ``page`` (a key of PAGES)."""
    return f"{NAV_LINK}-{page}"


# -- Overview page -----------------------------------------------------------------------
OVERVIEW_KPIS = "overview-kpis"
OVERVIEW_DATASET = "overview-dataset"  # page-local store: the dataset the page shows
OVERVIEW_FREQ = "overview-freq"
OVERVIEW_SPLIT = "overview-split"
OVERVIEW_METRIC = "overview-metric"
OVERVIEW_TREND = "overview-trend"
OVERVIEW_RANGE_NOTE = "overview-range-note"
OVERVIEW_RANGE_CLEAR = "overview-range-clear"
OVERVIEW_RHYTHM = "overview-rhythm"
OVERVIEW_RHYTHM_NOTE = "overview-rhythm-note"
OVERVIEW_FORECAST_FREQ = "overview-forecast-freq"
OVERVIEW_FORECAST = "overview-forecast"
OVERVIEW_BACKTEST = "overview-backtest"
OVERVIEW_COHORTS = "overview-cohorts"
#: Cross-filter shared by Overview and Map: {"dataset", "start", "end"} (session storage).
TIME_RANGE = "shared-time-range"

# -- Map page ------------------------------------------------------------------------------
MAP_DATASET = "map-dataset"  # page-local store: the dataset the page shows
MAP_URL_RANGE = "map-url-range"  # page-local store: ?start=&end= of the URL, if any
MAP_DECK = "map-deck"  # app.deckmap.DeckMap id (its stores use pattern-matching ids)
MAP_REPLAY = "map-replay"  # container of the replay controls
MAP_LAYERS = "map-layers"
MAP_CATEGORY = "map-category"
MAP_BEHAVIOR = "map-behavior"
MAP_SEGMENT = "map-segment"
MAP_WINDOW = "map-window"
MAP_SUMMARY = "map-summary"
MAP_RANGE_NOTE = "map-range-note"
MAP_RANGE_CLEAR = "map-range-clear"
MAP_ZONE_TREND = "map-zone-trend"
MAP_ZONE_TABLE = "map-zone-table"

# -- Users page ----------------------------------------------------------------------------
USERS_DATASET = "users-dataset"  # page-local store: the dataset the page shows
USERS_PICK = "users-pick"
USERS_SUMMARY = "users-summary"
USERS_TIMELINE = "users-timeline"
USERS_DRIFT = "users-drift"
USERS_MOBILITY = "users-mobility"
USERS_DECK = "users-deck"  # app.deckmap.DeckMap id
USERS_MAP_BOX = "users-map-box"
USERS_CHURN = "users-churn"
USERS_CHANGERS = "users-changers"

# -- Data page: datasets table ---------------------------------------------------------
DATASETS_TABLE = "data-datasets-table"
DROP_BUTTON = "data-drop-button"  # pattern-matching type; {"type": DROP_BUTTON, "name": name}
DROP_CONFIRM = "data-drop-confirm"
DROP_PENDING = "data-drop-pending"
DROP_MESSAGE = "data-drop-message"

# -- Data page: upload ------------------------------------------------------------------
UPLOAD_ZONE = "data-upload-zone"
UPLOAD_SLOT = "data-upload-slot"  # assets/upload.js puts the <input type=file> in here
UPLOAD_INPUT = "data-upload-input"  # the file input created by assets/upload.js
UPLOAD_PROGRESS = "data-upload-progress"
UPLOAD_PROGRESS_BAR = "data-upload-progress-bar"
UPLOAD_STATUS = "data-upload-status"
UPLOAD_CANCEL = "data-upload-cancel"  # shown by upload.js while an upload runs
UPLOAD_STORE = "data-upload-store"  # {"upload_id", "filename", "size"} set by upload.js

# -- Data page: sniff, mapping and import -------------------------------------------------
SNIFF_PANEL = "data-sniff-panel"
SNIFF_ERROR = "data-sniff-error"
SNIFF_SUMMARY = "data-sniff-summary"
FORMAT_DROPDOWN = "data-format-dropdown"
PREVIEW_TABLE = "data-preview-table"
MAPPING_FORM = "data-mapping-form"
MAP_FIELD = "data-map-field"  # pattern-matching type; {"type": MAP_FIELD, "field": canonical}
NAME_INPUT = "data-name-input"
IMPORT_OPTIONS = "data-import-options"  # checklist with "replace" / "keep_duplicates"
IMPORT_BUTTON = "data-import-button"
IMPORT_RESULT = "data-import-result"
