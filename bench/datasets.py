"""Where the complete real datasets are: ``$TRAILSCOPE_DATA``, else ``../shared/data`` beside the
repository (tests/conftest.py reads the same names; tests/data holds only small slices)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRAILSCOPE_DATA") or ROOT / ".." / "shared" / "data").resolve()
NYC = DATA / "foursquare-nyc" / "NYC_checkins_reconstructed.csv.gz"
MOVIELENS = DATA / "movielens-100k" / "u.data"
TAOBAO = DATA / "taobao-userbehavior" / "UserBehavior_head84475.csv"
GEOLIFE = DATA / "geolife" / "geolife_sample.txt.gz"
#: name -> file, as the model benches name the datasets.
FILES = {"nyc": NYC, "ml100k": MOVIELENS, "taobao": TAOBAO}
