"""`lc-assets summary` and the lineage walks over a real lineage file."""

from __future__ import annotations

from lc_assets.cli import main
from lc_assets.lib.lineage import LineageStore, insert_rows
from lc_assets.lib.packing import PackingConfig
from lc_assets.lib.packing.run import pack_pool
from lc_assets_tests.packing.conftest import make_pool, seed_lineage


def test_summary_says_what_was_made_where_and_what_next(tmp_path, tok, capsys):
    store = LineageStore(tmp_path / "lineage.duckdb")
    seed_lineage(store, make_pool(40, seed=5, prefix="u"))
    run = pack_pool(
        store, tok, PackingConfig(sample_tokens=4096, allow_small_samples=True), run_id="r", root=tmp_path / "p",
        log=lambda m: None,
    )  # fmt: skip
    with store.transaction() as con:
        insert_rows(con, "ruler_scores", [
            dict(model="tiny", backend="local", tasks_config_hash="t", task=task, max_seq_length=n, score=score,
                 nulls=0, num_samples=2, metric="string_match_all", run_id="r")
            for task, n, score in [("niah_single_1", 2048, 100.0), ("vt", 2048, 50.0), ("vt", 4096, 0.0)]
        ])  # fmt: skip
    assert main(["summary", "--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    n_samples = len(run.stages[0].result.samples)
    assert "documents" in out and "chunks" in out and "QA pairs" in out
    assert f"samples    {n_samples:>8,}   {n_samples} x 4,096 tokens" in out
    assert str(run.stages[0].output_dir) in out and str(store.path) in out
    assert "niah_single_1" in out and "average" in out and "75.0" in out
    sample_id = store.scalar("SELECT sample_id FROM packed_samples ORDER BY created_at DESC LIMIT 1")
    assert f"lc-assets lineage sample {sample_id}" in out and "make dev" in out
    assert main(["lineage", "sample", sample_id, "--db", str(store.path)]) == 0
    walk = capsys.readouterr().out
    assert walk.startswith(f"sample {sample_id}:") and "pairs" in walk


def test_materialize_passes_a_partition_only_to_shard_assets(tmp_path, monkeypatch):
    # packed_documents and the RULER assets are not partitioned: `dagster asset materialize` refuses --partition
    from lc_assets import cli

    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "call_forwarding_sigterm", lambda cmd, env: calls.append(cmd) or 1)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert main(["materialize", "--shard", "demo", "--select", "packed_documents"]) == 1
    assert main(["materialize", "--shard", "demo", "--select", "raw_corpus,chunks"]) == 1
    packing, corpus = calls
    assert "--partition" not in packing and packing[packing.index("--select") + 1] == "packed_documents"
    assert corpus[corpus.index("--partition") + 1] == "demo"
