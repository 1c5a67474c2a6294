"""Per-dataset summary tables: the layer above the analyses and below the services.

* tables.py: what the tables are, their registry, reading one set (``Rollup``);
* lookup.py: read-only: the fresh set that can answer a request, or None (never builds);
* build.py: the explicit build (``after_import``, ``ensure``), one transaction per set;
* batches.py: passes over the sorted events in batches of whole users (numpy, two at once);
* defaults.py: the pages' default answers stored with a set (forecast, replay paths, zones);
* temporal.py, users.py, spatial.py: one function per question, taking what the analysis
  takes: the summary tables when fresh and answerable, else the raw analysis. The services
  call these; the analyses never import this package.
"""
