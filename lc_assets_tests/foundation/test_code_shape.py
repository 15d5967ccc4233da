"""The shape of the code: the lineage API owns the SQL; every asset's run config is derived from its lib step config."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

from lc_assets.definitions import defs
from lc_assets.lib.chunking import ChunkingConfig
from lc_assets.lib.corpus.quality import FilterConfig
from lc_assets.lib.corpus.sources import SourceSpec
from lc_assets.lib.generation.config import GenerationConfig
from lc_assets.lib.judge import PairJudgeConfig
from lc_assets.lib.packing.config import PackingConfig
from lc_assets.lib.ruler import RulerScoresConfig, RulerTasksConfig

PACKAGE = Path(__file__).parents[2] / "lc_assets"

# -- no SQL outside lc_assets/lib/ ---------------------------------------------

#: statements against tables (upper case, as this code base writes SQL), not English words such as "select"
_SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(CREATE|ALTER|DROP)\s+(TABLE|VIEW|INDEX)\b|\bCOPY\s+\w+\s+(FROM|TO)\b"
)
#: DuckDB connection / LineageStore calls that take SQL text
_SQL_CALLS = frozenset({"execute", "executemany", "sql", "query", "scalar"})


def sql_in_source(source: str) -> list[str]:
    """Where a module holds SQL text or hands SQL to a connection: ["line N: ..."]."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.search(node.value):
            found.append(f"line {node.lineno}: SQL text {node.value[:60]!r}")
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts joined
            text = "{}".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if _SQL.search(text):
                found.append(f"line {node.lineno}: SQL f-string {text[:60]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SQL_CALLS:
            found.append(f"line {node.lineno}: .{node.func.attr}(...) runs SQL")
    return sorted(set(found), key=lambda s: int(s.split(":")[0].split()[1]))


def _dagster_layer() -> list[Path]:
    return sorted((PACKAGE / "defs").rglob("*.py")) + [PACKAGE / "cli.py", PACKAGE / "definitions.py"]


def test_no_sql_against_lineage_tables_outside_lib():
    """Queries live in lib (lc_assets/lib/lineage/, the stage's lib module); defs/ and the CLI call them."""
    offenders = {
        str(path.relative_to(PACKAGE.parent)): hits
        for path in _dagster_layer()
        if (hits := sql_in_source(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"move these into a lib function of the lineage API: {offenders}"


@pytest.mark.parametrize(
    "source, caught",
    [
        ('store.scalar("SELECT source FROM documents WHERE document_id = ?", [i])', True),
        ('con.execute(f"DELETE FROM {table} WHERE run_id = ?", [r])', True),
        ('Q = """INSERT OR REPLACE INTO shard_filters (shard) VALUES (?)"""', True),
        ('Q = "UPDATE sections SET done = true"', True),
        ('Q = "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS x INT"', True),
        ("rows = store.query(sql)", True),
        ('mat.add_argument("--select", default="*", help="select assets from the graph")', False),
        ('dg.AssetSelection.assets("raw_corpus")', False),
        ('log.info(f"selected {n} documents from {shard}")', False),
    ],
)
def test_the_sql_detector_catches_sql_and_nothing_else(source, caught):
    assert bool(sql_in_source(source)) is caught


# -- run configs derived from lib step configs -----------------------------------

# asset op -> (lib step config, lib fields the run config leaves out (the asset sets them or keeps their
# default), run-only fields of the Dagster layer, run-config defaults that differ from the lib's on purpose)
STEPS = {
    "raw_corpus": (SourceSpec, set(SourceSpec.model_fields) - {"max_documents"}, {"batch_bytes"}, {}),
    "filtered_corpus": (FilterConfig, set(), {"batch_chars"}, {}),
    "chunks": (ChunkingConfig, set(), {"exact_check_sample"}, {}),
    "generate_qa": (
        GenerationConfig,
        {"generator", "prompt_version"},
        {
            "pairs_per_section",
            "max_sections",
            "chunk_config_hash",
            "quality_rules",
            "report_sample_pairs",
            "cross_pairs",
        },
        {},
    ),
    "packed_documents": (PackingConfig, set(), {"min_mean_fill", "lock_timeout_s"}, {}),
    "judged_qa_pairs": (
        PairJudgeConfig,
        {"judge", "prompt_version"},
        {"enabled", "generation_config_hash", "max_rejected_share", "max_judge_error_share", "rejected_examples"},
        {},
    ),
    "ruler_tasks": (RulerTasksConfig, {"essay_source"}, {"essay_max_words"}, {}),
    "ruler_scores": (RulerScoresConfig, set(), {"tasks_config_hash"}, {"model": ""}),
}


def _asset_configs() -> dict[str, type]:
    configs = {}
    for assets_def in defs().resolve_asset_graph().assets_defs:
        if assets_def.is_executable and (arg := assets_def.op.compute_fn.get_config_arg()):
            configs[assets_def.op.name] = arg.annotation
    return configs


def _same_type(run_config_type, lib_type) -> bool:
    # Dagster's config system has no tuples: tuple[X, ...] in lib is list[X] (or list[derived X]) in the run config
    lib_text, run_text = str(lib_type), str(run_config_type)
    return run_text == lib_text or run_text.startswith("list[") and lib_text.startswith("tuple[")


def _default(info):
    default = info.default_factory() if info.default_factory else info.default
    return list(default) if isinstance(default, tuple) else default


def test_every_asset_with_a_run_config_has_its_step_config():
    assert set(_asset_configs()) == set(STEPS), "a new asset config: derive it from its lib StepConfig, list it here"


@pytest.mark.parametrize("op_name", sorted(STEPS))
def test_run_config_fields_and_defaults_equal_the_lib_step_config(op_name):
    lib, left_out, run_only, overridden = STEPS[op_name]
    run_fields, lib_fields = _asset_configs()[op_name].model_fields, lib.model_fields
    assert set(run_fields) == (set(lib_fields) - left_out) | run_only
    for name in set(lib_fields) - left_out:
        run_info, lib_info = run_fields[name], lib_fields[name]
        assert _same_type(run_info.annotation, lib_info.annotation), (name, run_info.annotation, lib_info.annotation)
        assert run_info.description == lib_info.description, name
        if name in overridden:
            assert _default(run_info) == overridden[name] and lib_info.default is PydanticUndefined, name
        else:
            assert _default(run_info) == _default(lib_info), (name, _default(run_info), _default(lib_info))


@pytest.mark.parametrize("op_name", ["filtered_corpus", "chunks", "packed_documents", "ruler_tasks", "ruler_scores"])
def test_default_run_config_gives_the_lib_default_config_hash(op_name):
    """An empty run config makes exactly the lib's default step config: same hash, so nothing re-runs."""
    from lc_assets.defs.stepconfig import step_config

    lib = STEPS[op_name][0]
    resolved = {"model": "m"} if op_name == "ruler_scores" else {}  # the asset resolves an empty model
    made = step_config(lib, _asset_configs()[op_name](), **resolved)
    assert made == lib(**resolved) and made.config_hash() == lib(**resolved).config_hash()
