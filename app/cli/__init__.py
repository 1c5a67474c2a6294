"""The ``trailscope`` command line."""
