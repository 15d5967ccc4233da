"""The lc_assets code location: everything under defs/, loaded the Dagster 1.13 way."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
