"""The lineage API: the DuckDB schema, the queries over it, the per-run writer and the catalog of run files.

store.py       schema, LineageStore (short-lived connections, retried on the file lock), insert_rows
writer.py      LineageWriter: one thread, one long-lived connection, group commits
catalog.py     per-run lineage files and their merge into the catalog
generation.py  the generation step's queries (sections to grow, resume state, prompt rebuild, stats)
"""

from lc_assets.lib.lineage.store import SCHEMA_VERSION, LineageStore, insert_rows

__all__ = ["SCHEMA_VERSION", "LineageStore", "insert_rows"]
