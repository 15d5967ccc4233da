"""The watched folders and profiles of the operations sensors and schedules (the `ops_folders` resource)."""

import os
from pathlib import Path

import dagster as dg

from lc_assets.defs.resources import inbox_dir

CHECKPOINTS_DIR_ENV = "LC_ASSETS_CHECKPOINTS_DIR"
CORPUS_PROFILE_ENV = "LC_ASSETS_CORPUS_PROFILE"
EVAL_PROFILE_ENV = "LC_ASSETS_EVAL_PROFILE"


class OpsFoldersResource(dg.ConfigurableResource):
    """Where the sensors look, how long a new entry must rest, and which profile their runs use.

    Set the folders through the environment (LC_ASSETS_INBOX_DIR, LC_ASSETS_CHECKPOINTS_DIR) of BOTH the
    daemon and the code server: raw_corpus resolves `inbox-*` shards from the same variable.
    """

    inbox_dir: str = ""  # empty: $LC_ASSETS_INBOX_DIR, else <data dir>/inbox
    checkpoints_dir: str = ""  # empty: $LC_ASSETS_CHECKPOINTS_DIR; unset = the checkpoint sensor skips
    settle_seconds: float = 30.0  # an entry is taken once its newest file is this old (copies finish first)
    corpus_profile: str = ""  # run config of inbox runs: demo, production, a YAML path, or "" (asset defaults)
    eval_profile: str = ""  # run config of RULER eval runs (ruler_tasks/ruler_scores ops + generator resource)

    def inbox_path(self) -> Path:
        return Path(self.inbox_dir) if self.inbox_dir else inbox_dir()

    def checkpoints_path(self) -> Path | None:
        value = self.checkpoints_dir or os.environ.get(CHECKPOINTS_DIR_ENV, "")
        return Path(value) if value else None


@dg.definitions
def resources() -> dg.Definitions:
    # a deployment picks the profiles of sensor/schedule runs by environment (docker/docker-compose.yml does)
    folders = OpsFoldersResource(
        corpus_profile=os.environ.get(CORPUS_PROFILE_ENV, ""), eval_profile=os.environ.get(EVAL_PROFILE_ENV, "")
    )
    return dg.Definitions(resources={"ops_folders": folders})
