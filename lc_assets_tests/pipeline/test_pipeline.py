"""The corpus → chunks → generation → packing graph through Dagster, with a scripted generator double."""

import json
from pathlib import Path

import dagster as dg
import datasets
import pytest
import yaml

from lc_assets.defs.chunks.assets import chunks
from lc_assets.defs.corpus.assets import raw_corpus
from lc_assets.defs.filters.assets import filtered_corpus
from lc_assets.defs.generation.assets import generate_qa
from lc_assets.defs.generation.resources import GeneratorResource
from lc_assets.defs.packing.assets import packed_documents
from lc_assets.defs.partitions import CORPUS_SHARDS
from lc_assets.defs.resources import CorpusSourcesResource, LineageStoreResource, TokenizerResource
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.tokenizer import load_tokenizer
from lc_assets_tests.foundation.conftest import make_text, materialization_metadata
from lc_assets_tests.generation.doubles import ScriptedBackend


class ScriptedGenerator(GeneratorResource):
    """The generator resource, answering with the scripted test double instead of a model."""

    def build(self, log=None):
        return ScriptedBackend(load_tokenizer())


RUN_CONFIG = {
    "ops": {
        "chunks": {"config": {"min_tokens": 200, "max_tokens": 600}},
        "generate_qa": {"config": {"min_context_tokens": 64, "max_context_tokens": 160, "pairs_per_section": 3}},
        "packed_documents": {"config": {"sample_tokens": 2048, "allow_small_samples": True, "min_mean_fill": 0.95}},
    }
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LC_ASSETS_DATA_DIR", str(tmp_path / "data"))
    books = tmp_path / "books"
    books.mkdir()
    for i in range(5):
        (books / f"book{i}.txt").write_text(make_text(200 + i, 50))
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"books": {"kind": "local", "path": str(books), "license": "CC0-1.0"}}))
    resources = {
        "lineage": LineageStoreResource(path=str(tmp_path / "data" / "lineage.duckdb")),
        "target_tokenizer": TokenizerResource(),
        "corpus_sources": CorpusSourcesResource(sources_file=str(sources)),
        "generator": ScriptedGenerator(),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["books"])
    return resources, instance, LineageStore(tmp_path / "data" / "lineage.duckdb")


def _run(env, assets, partition="books"):
    resources, instance, _ = env
    ops = {a.op.name for a in assets}
    run_config = {"ops": {k: v for k, v in RUN_CONFIG["ops"].items() if k in ops}}
    partitioned = any(a.partitions_def is not None for a in assets)
    return dg.materialize(
        assets,
        resources=resources,
        instance=instance,
        partition_key=partition if partitioned else None,
        run_config=run_config,
    )


def test_whole_graph_with_lineage_back_to_documents(env):
    _, _, store = env
    result = _run(env, [raw_corpus, filtered_corpus, chunks, generate_qa, packed_documents])
    assert result.success
    qa = materialization_metadata(result, "qa_pairs")
    n_sections = store.scalar("SELECT count(*) FROM chunks")
    assert qa["sections"] == n_sections and qa["pairs_total"] == 3 * n_sections
    assert qa["finish_reasons"] == {"max_steps": n_sections}
    assert "sample_pair" in qa
    packed = materialization_metadata(result, "packed_documents")
    assert packed["samples"] >= 1 and packed["section_reuse"] == 0
    assert all(c.passed for c in result.get_asset_check_evaluations()), [
        (c.check_name, c.metadata) for c in result.get_asset_check_evaluations() if not c.passed
    ]
    # from a packed sample back to its documents and the exact prompts of its pairs
    rows = store.query(
        """SELECT ps.sample_id, d.document_id, mp.prompt_id, q.question
           FROM packed_sample_sections ps
           JOIN sections s ON s.section_id = ps.base_section_id
           JOIN documents d ON d.document_id = s.document_id
           JOIN qa_pairs q ON q.section_id = s.section_id
           JOIN masked_prompts mp ON mp.prompt_id = q.prompt_id"""
    )
    assert rows and all(r[2].startswith(r[2].split(":")[0]) for r in rows)
    out_dir = Path(packed["output_dir"])
    ds = datasets.load_from_disk(str(out_dir / "hf_dataset"))
    assert len(ds) == packed["samples"] and all(len(x) == 2048 for x in ds["input_ids"])
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest


def test_generation_resumes_and_packing_carries_leftovers(env):
    _, _, store = env
    _run(env, [raw_corpus, filtered_corpus, chunks])
    first = _run(env, [generate_qa])
    assert materialization_metadata(first, "qa_pairs")["pairs_this_run"] == 3 * store.scalar(
        "SELECT count(*) FROM chunks"
    )
    again = _run(env, [generate_qa])  # all sections finished: nothing to do
    assert materialization_metadata(again, "qa_pairs")["pairs_this_run"] == 0
    packed1 = materialization_metadata(_run(env, [packed_documents]), "packed_documents")
    used = store.scalar("SELECT count(*) FROM packed_sample_sections")
    assert packed1["sections_packed"] == used
    packed2 = materialization_metadata(_run(env, [packed_documents]), "packed_documents")
    # the second run packs only what the first left over, never a section twice
    assert packed2["sections_in_pool"] == packed1["sections_in_pool"] - packed1["sections_packed"]
    assert store.scalar("SELECT count(*) - count(DISTINCT base_section_id) FROM packed_sample_sections") == 0


def test_lineage_cli_walks_sample_to_documents_and_back(env, capsys):
    from lc_assets.cli import main

    _, _, store = env
    _run(env, [raw_corpus, filtered_corpus, chunks, generate_qa, packed_documents])
    sample_id = store.scalar("SELECT sample_id FROM packed_samples LIMIT 1")
    assert main(["lineage", "sample", sample_id, "--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert f"sample {sample_id}" in out and "pairs" in out and "CC0-1.0" in out
    doc = store.scalar(
        "SELECT s.document_id FROM packed_sample_sections ps JOIN sections s "
        "ON s.section_id = ps.base_section_id WHERE ps.sample_id = ? LIMIT 1",
        [sample_id],
    )
    assert main(["lineage", "document", doc, "--db", str(store.path)]) == 0
    assert sample_id in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no packed sample"):
        main(["lineage", "sample", "nope", "--db", str(store.path)])


def test_quality_metadata_checks_and_configurable_thresholds(env):
    resources, instance, store = env
    _run(env, [raw_corpus, filtered_corpus, chunks])
    result = _run(env, [generate_qa])
    qa = materialization_metadata(result, "qa_pairs")
    assert qa["quality_evidence_verbatim_share"] == 1.0 and qa["quality_empty_answers"] == 0
    assert qa["quality_plots"].startswith("![") and "| books |" in qa["quality_by_shard"]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {
        "qa_evidence_verbatim", "qa_no_empty_answers", "qa_near_duplicates", "qa_evidence_depth_coverage",
        "qa_yield", "qa_kind_mix",
    }  # fmt: skip
    assert all(c.passed for c in checks.values())
    assert store.scalar("SELECT count(*) FROM generation_quality WHERE scope = 'run'") == 1

    # a stricter rule, configured as WARN: the check fails with that severity; rules left out are not checked
    run_config = {"ops": {"generate_qa": {"config": {
        **RUN_CONFIG["ops"]["generate_qa"]["config"],
        "quality_rules": [{"metric": "yield_", "op": ">=", "value": 1.01, "severity": "WARN", "min_pairs": 1}],
    }}}}  # fmt: skip
    strict = dg.materialize(
        [generate_qa], resources=resources, instance=instance, partition_key="books", run_config=run_config
    )
    checks = {c.check_name: c for c in strict.get_asset_check_evaluations()}
    assert not checks["qa_yield"].passed and checks["qa_yield"].severity == dg.AssetCheckSeverity.WARN
    assert checks["qa_evidence_verbatim"].passed
    assert checks["qa_evidence_verbatim"].metadata["rules"].value == "no rule configured"

    bad = {"ops": {"generate_qa": {"config": {"quality_rules": [{"metric": "nope", "op": ">=", "value": 1}]}}}}
    failed = dg.materialize(
        [generate_qa], resources=resources, instance=instance, partition_key="books", run_config=bad,
        raise_on_error=False,
    )  # fmt: skip
    assert not failed.success
    assert "quality_rules name metrics without a check: ['nope']" in str(failed.all_events)


def test_cross_pairs_through_generation_and_coherent_packing(env, tmp_path):
    """A long book: cross sections grown by generate_qa, appended by packed_documents (coherent) with distances."""
    resources, instance, store = env
    books = Path(resources["corpus_sources"].sources_file).parent / "books"
    for old in books.iterdir():
        old.unlink()
    (books / "long_book.txt").write_text(make_text(7, 400))
    ops = {
        "chunks": RUN_CONFIG["ops"]["chunks"],
        "generate_qa": {
            "config": {
                **RUN_CONFIG["ops"]["generate_qa"]["config"],
                "cross_pairs": {
                    "sections_per_chunk": 1,
                    "steps_per_section": 2,
                    "min_distance_tokens": 1200,
                    "max_distance_tokens": 2000,
                },
            }
        },  # fmt: skip
        "packed_documents": {
            "config": {"sample_tokens": 4096, "allow_small_samples": True, "mode": "coherent", "min_mean_fill": 0.95}
        },  # fmt: skip
    }
    result = dg.materialize(
        [raw_corpus, filtered_corpus, chunks, generate_qa, packed_documents],
        resources=resources,
        instance=instance,
        partition_key="books",
        run_config={"ops": ops},
    )
    assert result.success
    qa = materialization_metadata(result, "qa_pairs")
    assert qa["cross_sections_planned"] > 0 and qa["cross_pairs_this_run"] > 0
    packed = materialization_metadata(result, "packed_documents")
    assert packed["cross_pairs"] > 0 and packed["cross_farthest_median"] >= packed["cross_nearest_median"] > 0
    # the base sections are what was packed; each cross pair's evidence names the chunk it lies in
    assert (
        store.scalar("SELECT count(DISTINCT e.chunk_id) FROM qa_evidence e JOIN cross_sections x USING (section_id)")
        > 1
    )
    assert all(c.passed for c in result.get_asset_check_evaluations()), [
        (c.check_name, c.metadata) for c in result.get_asset_check_evaluations() if not c.passed
    ]
