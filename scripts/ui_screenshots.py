#!/usr/bin/env python3
"""Screenshots of the Dagster UI for lc_assets: the asset graph and a real run of raw_corpus -> filtered_corpus -> chunks.

    python scripts/ui_screenshots.py                 # PNGs into docs/screenshots/
    python scripts/ui_screenshots.py --out /tmp/ui   # elsewhere

What it does, all on 127.0.0.1 with throwaway state:
1. a temp DAGSTER_HOME holding a copy of the repo's dagster.yaml (the run coordinator swapped for the
   default one: no daemon runs here to dequeue runs), a temp LC_ASSETS_DATA_DIR, and a tiny local shard
   (a few CPython stdlib modules, PSF-licensed) declared through LC_ASSETS_SOURCES_FILE;
2. starts `dagster-webserver -m lc_assets.definitions` and waits for it;
3. through Dagster's GraphQL API: registers the shard as a partition of corpus_shards, launches
   corpus_ingest_job (raw_corpus -> filtered_corpus -> chunks) for it, and waits until the run succeeds;
4. takes headless Chromium screenshots of the asset groups, the data path's asset graph, the asset
   catalog, the run, and the filtered_corpus and chunks asset pages (their metadata from the run: the
   shard holds a vendored copy of csv.py, which filtered_corpus drops as a near-duplicate);
5. stops the webserver (always) and prints a JSON summary (run id, status, PNG paths and sizes).
Exit code 0 only when the run succeeded and every PNG was written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARD = "ui-demo"
STDLIB_MODULES = ("json", "csv", "textwrap", "argparse", "difflib", "shlex")  # small, real, PSF-licensed text
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip
WIDTH, HEIGHT = 1600, 1000  # every PNG's size in pixels

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}"""
ADD_PARTITION = """
mutation Add($name: String!, $key: String!, $repo: RepositorySelector!) {
  addDynamicPartition(partitionsDefName: $name, partitionKey: $key, repositorySelector: $repo) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on PythonError { message }
    ... on DuplicateDynamicPartitionError { partitionName }
  }
}"""
REPOSITORIES = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dagster:
    """A dagster-webserver process on 127.0.0.1 and its GraphQL endpoint."""

    def __init__(self, home: Path, env: dict[str, str], port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = log_path.open("wb")
        cmd = [sys.executable, "-m", "dagster_webserver", "-m", "lc_assets.definitions", "-h", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*cmd, "-p", str(port)],
            env=env,
            cwd=home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the server and its code-server child
        )

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"dagster-webserver not ready after {timeout_s} s")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            payload = json.loads(resp.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def prepare_home(root: Path) -> tuple[Path, dict[str, str]]:
    """DAGSTER_HOME with the repo's dagster.yaml (default run coordinator), data dir, tiny shard; the env."""
    home = root / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shard_dir = root / "shard"
    shard_dir.mkdir()
    stdlib = Path(json.__file__).parents[1]
    for name in STDLIB_MODULES:
        src = stdlib / f"{name}.py" if (stdlib / f"{name}.py").is_file() else stdlib / name / "__init__.py"
        shutil.copy(src, shard_dir / f"{name}.py")
    # a vendored copy with one line changed: filtered_corpus drops it as a near-duplicate, naming csv.py
    vendored = (shard_dir / "csv.py").read_text() + "\n# vendored copy\n"
    (shard_dir / "csv_vendored.py").write_text(vendored)
    sources = root / "sources.yaml"
    sources.write_text(yaml.safe_dump({SHARD: {"kind": "local", "path": str(shard_dir), "license": "PSF-2.0"}}))
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        LC_ASSETS_DATA_DIR=str(root / "data"),
        LC_ASSETS_SOURCES_FILE=str(sources),
        LC_ASSETS_INBOX_DIR=str(root / "inbox"),  # empty: the inbox sensor (not running without a daemon) idles
        HF_HUB_OFFLINE="1",
    )
    env.pop("LC_ASSETS_CHECKPOINTS_DIR", None)
    return home, env


def run_corpus_ingest(dagster: Dagster, timeout_s: float = 300) -> tuple[str, str]:
    """Register the shard, launch raw_corpus -> filtered_corpus -> chunks for it, wait; returns (run id, status)."""
    repo = dagster.graphql(REPOSITORIES)["repositoriesOrError"]["nodes"][0]
    selector = {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"]}
    added = dagster.graphql(ADD_PARTITION, {"name": "corpus_shards", "key": SHARD, "repo": selector})
    kind = added["addDynamicPartition"]["__typename"]
    if kind not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
        raise RuntimeError(f"addDynamicPartition: {added}")
    params = {
        "selector": {**selector, "jobName": "corpus_ingest_job"},
        # small chunk bounds: stdlib modules are a few thousand tokens each, not 50k
        "runConfigData": {"ops": {"chunks": {"config": {"min_tokens": 500, "max_tokens": 2500}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": SHARD}]},
    }
    launched = dagster.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launchRun: {launched}")
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + timeout_s
    status = launched["run"]["status"]
    while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
        time.sleep(1)
        status = dagster.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
    return run_id, status


def screenshot(url: str, out: Path, profile_dir: Path, budget_ms: int = 25000, scale: float = 1.0) -> int:
    """One WIDTH x HEIGHT PNG of a page after `budget_ms` of virtual time for the SPA to render.

    `scale` < 1 lays the page out on a larger viewport (WIDTH / scale CSS pixels wide) drawn into the same
    PNG: the asset graph then fits its whole path at a zoom where Dagster still draws each node's details.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        raise FileNotFoundError("chromium not found (apt-get install chromium; scripts/install_system_deps.sh)")
    profile_dir.mkdir(parents=True, exist_ok=True)
    size = f"--window-size={round(WIDTH / scale)},{round(HEIGHT / scale)}"
    cmd = [chromium, *CHROMIUM_FLAGS, size, f"--force-device-scale-factor={scale}", f"--user-data-dir={profile_dir}"]
    cmd.append(f"--virtual-time-budget={budget_ms}")
    subprocess.run(
        [*cmd, f"--screenshot={out}", url], check=True, capture_output=True, timeout=180, start_new_session=True
    )
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--port", type=int, default=0, help="webserver port (0: a free one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    root = Path(tempfile.mkdtemp(prefix="lc_assets_ui_"))
    dagster = None
    summary: dict[str, object] = {}
    try:
        home, env = prepare_home(root)
        dagster = Dagster(home, env, args.port or free_port(), root / "webserver.log")
        dagster.wait_ready()
        run_id, status = run_corpus_ingest(dagster)
        summary.update(run_id=run_id, status=status)
        pages = {  # name: (url, scale)
            # all four groups (the global lineage page shows them collapsed)
            "asset_groups.png": (f"{dagster.url}/asset-groups", 1.0),
            # the data path raw_corpus -> ... -> packed_documents, expanded, each node with its status
            "asset_graph.png": (
                f"{dagster.url}/assets/raw_corpus?view=lineage&lineageScope=downstream&lineageDepth=5",
                0.8,
            ),
            "assets_catalog.png": (f"{dagster.url}/assets", 1.0),
            "run.png": (f"{dagster.url}/runs/{run_id}", 1.0),
            "filtered_corpus_asset.png": (f"{dagster.url}/assets/filtered_corpus?partition={SHARD}", 1.0),
            "chunks_asset.png": (f"{dagster.url}/assets/chunks?partition={SHARD}", 1.0),
        }
        sizes = {
            name: screenshot(url, args.out / name, root / "chromium", scale=scale)
            for name, (url, scale) in pages.items()
        }
        summary["screenshots"] = {str(args.out / n): s for n, s in sizes.items()}
    except Exception as exc:  # the summary says what failed; the webserver log helps
        summary["error"] = f"{type(exc).__name__}: {exc}"
        log = root / "webserver.log"
        if log.is_file():
            summary["webserver_log_tail"] = log.read_text(errors="replace")[-3000:]
    finally:
        if dagster is not None:
            dagster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 0 if summary.get("status") == "SUCCESS" and "error" not in summary else 1


if __name__ == "__main__":
    raise SystemExit(main())
