"""Every Dash component id of the app shell and of every page, in one place.

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
    ("live", "Live", "/live"),
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
MAP_DECK = "map-deck"  # app.deckgl DeckMap id (its stores use pattern-matching ids)
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
USERS_DECK = "users-deck"  # app.deckgl DeckMap id
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
IMPORT_STATUS = "data-import-status"  # progress line of a running import
IMPORT_JOB = "data-import-job"  # store: the id of the import job the page follows
IMPORT_POLL = "data-import-poll"  # interval polling that job

# -- Models page ---------------------------------------------------------------------------
MODELS_MODEL_PICK = "models-model-pick"
MODELS_SPLIT_PICK = "models-split-pick"
MODELS_EPOCHS = "models-epochs"
MODELS_MAX_LEN = "models-max-len"
MODELS_HIDDEN = "models-hidden"  # the hidden-size input
MODELS_DEVICE = "models-device"
MODELS_PATIENCE = "models-patience"
MODELS_PROCESSES = "models-processes"  # training processes (PyTorch DDP)
MODELS_SETTINGS_HINT = "models-settings-hint"
MODELS_TRAIN = "models-train"  # the Train button
MODELS_CANCEL = "models-cancel"
MODELS_TRAIN_ERROR = "models-train-error"
MODELS_JOB_STORE = "models-job"  # store: the followed job id
MODELS_POLL = "models-poll"  # interval polling the job
MODELS_PROGRESS = "models-progress"
MODELS_PROGRESS_BAR = "models-progress-bar"
MODELS_STATUS = "models-status"
MODELS_CURVE = "models-curve"
MODELS_CURVE_WRAP = "models-curve-wrap"
MODELS_MESSAGES = "models-messages"
MODELS_DATASET = "models-dataset"  # page-local store: the dataset the page shows
MODELS_VERSION = "models-version"  # store: bumped when the model list changes
MODELS_TABLE = "models-table"
MODELS_INSPECT_PICK = "models-inspect-pick"
MODELS_SLICE_KIND = "models-slice-kind"
MODELS_SLICE_METRIC = "models-slice-metric"
MODELS_SLICE_GRAPH = "models-slice-graph"
MODELS_USER_PICK = "models-user-pick"
MODELS_TOPK = "models-topk"
MODELS_RECS = "models-recs"
MODELS_RECS_NOTE = "models-recs-note"
MODELS_MAP = "models-map"  # app.deckgl DeckMap id

# -- Explain page --------------------------------------------------------------------------
EXPLAIN_DATASET = "explain-dataset"  # page-local store: the dataset shown
EXPLAIN_MODEL = "explain-model"
EXPLAIN_USER = "explain-user"
EXPLAIN_RECS = "explain-recs"
#: pattern-matching type: {"type": EXPLAIN_REC_BUTTON, "item": item id}
EXPLAIN_REC_BUTTON = "explain-rec"
EXPLAIN_REQUEST = "explain-request"  # store: {"dataset", "user", "item", "model_id"}
EXPLAIN_JOB = "explain-job"  # store: {"job": id, **request}
EXPLAIN_TICK = "explain-tick"
EXPLAIN_PROGRESS = "explain-progress"
EXPLAIN_PROGRESS_BAR = "explain-progress-bar"
EXPLAIN_STATUS = "explain-status"
EXPLAIN_RESULT = "explain-result"
EXPLAIN_SUMMARY = "explain-summary"
EXPLAIN_FIG_ATTRIBUTION = "explain-fig-attribution"
EXPLAIN_FIG_GROUPS = "explain-fig-groups"
EXPLAIN_FIG_COUNTERFACTUAL = "explain-fig-counterfactual"
EXPLAIN_FIG_ATTENTION = "explain-fig-attention"
EXPLAIN_MAP = "explain-map"  # app.deckgl DeckMap id
EXPLAIN_EXPORT_HTML = "explain-export-html"
EXPLAIN_EXPORT_PDF = "explain-export-pdf"
EXPLAIN_EXPORT_STATUS = "explain-export-status"
EXPLAIN_DOWNLOAD = "explain-download"
EXPLAIN_BATCH_USERS = "explain-batch-users"
EXPLAIN_BATCH_FORMAT = "explain-batch-format"
EXPLAIN_BATCH_BUTTON = "explain-batch-button"
EXPLAIN_BATCH_STATUS = "explain-batch-status"
EXPLAIN_BATCH_DOWNLOAD = "explain-batch-download"
EXPLAIN_BATCH_CANCEL = "explain-batch-cancel"
EXPLAIN_BATCH_JOB = "explain-batch-job"  # store: the id of the batch export job
EXPLAIN_BATCH_POLL = "explain-batch-poll"  # interval polling that job
MAP_SWAP_BUTTON = "map-swap-latlon"  # Data page: exchanges the latitude and longitude mapping
OVERVIEW_TREND_NOTE = "overview-trend-note"  # Overview: the partial first / last periods
NAME_LIMIT = "data-name-limit"  # Data page: the dataset name's length against its limit
EXPLAIN_CLICKED = "explain-clicked"  # store: when the item was clicked (browser ms clock)
EXPLAIN_DEFAULT_NOTE = "explain-default-note"  # why the preselected model was chosen
MODELS_DEFAULT_NOTE = "models-default-note"  # Models page: why the inspected model is preselected
#: pattern-matching type: {"type": MODELS_DELETE, "model": model id}, a Delete button per model
MODELS_DELETE = "models-delete"
MODELS_DELETE_CONFIRM = "models-delete-confirm"  # dcc.ConfirmDialog of a model's deletion
MODELS_DELETE_TARGET = "models-delete-target"  # store: the model id waiting for confirmation
MODELS_DELETE_STATUS = "models-delete-status"

# -- Live page (app/pages/live.py) ---------------------------------------------------------
LIVE_DATASET = "live-dataset"  # page-local store: the dataset the page shows
LIVE_TICK = "live-tick"  # dcc.Interval: the page refreshes without reloading
LIVE_KPIS = "live-kpis"  # totals: events arrived, last arrival
LIVE_EMPTY = "live-empty"  # how to send events, while none has arrived
LIVE_MINUTES = "live-minutes"  # graph: events per minute of arrival, last hour
LIVE_MAP = "live-map"  # DeckMap: the newest located events
LIVE_FEED = "live-feed"  # table: the latest events
LIVE_FEED_BOX = "live-feed-box"
LIVE_CHANGES = "live-changes"  # users whose top-10 changed most
LIVE_STATUS = "live-status"  # a sentence: the last refresh, or what failed
LIVE_STAMP = "live-stamp"  # store: the version last drawn (the page redraws when it changes)
