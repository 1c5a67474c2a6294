"""The importer: a file -> a dataset in the workspace, with a report of what was kept and why
rows were rejected. Entry points: ``analytics.ingest.pipeline`` (sniff, import_file).

One import opens the file once (layout.Source) and runs four steps, one module each:
sniff.py (layout + which format) -> plan.py (column plan and its SQL) -> stage.py (the one
DuckDB parse into a staging table: reasons, stats, repeats, line numbers) -> publish.py
(Store.save_dataset transaction, report). Each format's rules live in one module of formats/,
named by formats/registry.py. Shared helpers: types.py (contracts), layout.py (file head and
text layout), sql.py (quoting), timeparse.py (time forms), geohash.py, lines.py (row -> line).
"""
