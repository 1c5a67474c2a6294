"""``python -m trailscope.app.cli``: the same as the ``trailscope`` command."""

import sys

from .main import main

sys.exit(main())
