"""The Dash dashboard, its service layer, the CLI and the reports (``trailscope.app``)."""

from pathlib import Path

#: CSS, JavaScript and the logo Dash serves (``trailscope.assets``: the repository's assets/
#: folder, installed beside this package).
ASSETS = Path(__file__).resolve().parents[1] / "assets"
