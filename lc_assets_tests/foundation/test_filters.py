"""Quality and near-duplicate filters: degenerate text dropped with the rule and value, code and prose kept."""

import random

import pytest
from pydantic import ValidationError

from lc_assets.lib.corpus.documents import RawDocument
from lc_assets.lib.corpus.embedded import iter_embedded
from lc_assets.lib.corpus.quality import FilterConfig, NearDuplicateIndex, judge, minhash_signature
from lc_assets_tests.foundation.conftest import make_text

CFG = FilterConfig()

_GERMAN_WORDS = (
    "der die das und ist nicht ein eine mit sich auf für dem den von sie wir ich war hatte König Tochter Wald "
    "Schloss schön dunkel Sonne Gesicht großer kleiner Brunnen spielte goldene Kugel warf fing wieder weinte "
    "Frosch sprach hinein Wasser tief Grund sehen konnte jüngste wunderte sooft schien nahe lag unter alten Linde"
).split()
_GERMAN_VOCAB = [w + end for w in _GERMAN_WORDS for end in ("", "en", "er", "es", "lich", "ung", "chen", "heit")]
_RNG = random.Random(1)
GERMAN = " ".join(" ".join(_RNG.choices(_GERMAN_VOCAB, k=12)).capitalize() + "." for _ in range(400))


@pytest.mark.parametrize(
    "name, text, rule",
    [
        ("one word repeated", "word " * 40_000, "top_2gram_char_frac"),
        (
            "numbered filler",
            " ".join(f"This is filler sentence number {i}." for i in range(20_000)),
            "top_2gram_char_frac",
        ),
        ("the same line", "Buy cheap watches online today, best prices!\n" * 3000, "dup_line_char_frac"),
        ("the same paragraph", ("A paragraph of legal boilerplate text. " * 12 + "\n\n") * 400, "dup_para_char_frac"),
        ("german", GERMAN, "language"),
        # fewer words than min_words, yet 100k tokens: one run of letters (a dump with no word breaks)
        ("a run without word breaks", "a" * 800_000, "mean_word_chars"),
    ],
)
def test_degenerate_text_is_dropped_with_the_rule_and_value(name, text, rule):
    verdict = judge(text, CFG)
    assert not verdict.kept, name
    assert verdict.reason == rule
    value = verdict.stats.get(rule)
    assert rule in verdict.detail and (rule == "language" or f"{value:.3f}" in verdict.detail)


def test_an_api_reference_repeating_short_parameter_paragraphs_is_kept():
    # Node's fs.html: over half of its paragraphs are repeated parameter lines of the callback, sync and promise
    # variants, yet they hold under a third of its characters; a paragraph count alone dropped it
    rng = random.Random(3)
    words = [f"{w}{i}" for w in ("open", "read", "write", "file", "mode", "flag", "path", "buffer") for i in range(90)]
    sections = []
    for i in range(300):
        prose = " ".join(" ".join(rng.choices(words, k=14)).capitalize() + "." for _ in range(5))
        params = ["path <string> | <Buffer> | <URL>", "callback <Function>", "err <Error>", "Added in: v0.1.29"]
        sections.append(f"fs.call{i}(path, callback)\n\n{prose}\n\n" + "\n\n".join(params))
    text = "\n\n".join(sections)
    verdict = judge(text, CFG)
    assert verdict.stats["dup_para_frac"] > 0.5 and verdict.stats["dup_para_char_frac"] < CFG.dup_para_char_frac
    assert verdict.kept, verdict.detail
    assert not judge(text, CFG.model_copy(update={"dup_para_frac": 0.5})).kept  # the count rule, when switched on


def test_code_and_manuals_of_the_embedded_corpus_are_kept():
    wanted = ["cpython-asyncio", "cpython-email", "cpython-unittest", "devils-dictionary", "postgresql-sql-commands"]
    docs = [d for d in iter_embedded(wanted) if isinstance(d, RawDocument)]
    assert {d.source for d in docs} >= {"embedded:cpython-asyncio", "embedded:cpython-unittest"}
    for doc in docs:
        verdict = judge(doc.text, CFG)
        assert verdict.kept, (doc.source, verdict.detail)
        assert verdict.stats["languages"].get("en", 0) >= CFG.language_samples // 2
        assert 0 < verdict.stats["dup_5gram_char_frac"] < CFG.dup_5gram_char_frac


def test_rules_switch_off_and_short_texts_are_not_measured():
    assert judge(GERMAN, FilterConfig(languages=None)).kept
    assert judge("word " * 40_000, FilterConfig(top_2gram_char_frac=None, top_3gram_char_frac=None,
                                                 top_4gram_char_frac=None, dup_5gram_char_frac=None,
                                                 dup_10gram_char_frac=None, min_distinct_word_ratio=None, languages=None)).kept  # fmt: skip
    short = judge("too short to judge", CFG)
    assert short.kept and short.stats == {"words": 4, "mean_word_chars": 3.75}
    # a run without word breaks is caught whatever the language settings
    assert judge("x" * 800_000, FilterConfig(languages=None)).reason == "mean_word_chars"


def test_near_duplicates_are_found_and_others_are_not():
    rng = random.Random(5)
    original = make_text(70, 300)
    words = original.split(" ")
    for i in rng.sample(range(len(words)), len(words) // 100):  # 1% of the words changed
        words[i] = "changed"
    near, other = " ".join(words), make_text(71, 300)
    index = NearDuplicateIndex(CFG)
    index.add("original", minhash_signature(original, CFG))
    found = index.nearest(minhash_signature(near, CFG))
    assert found is not None and found[0] == "original" and found[1] >= 0.8
    assert index.nearest(minhash_signature(other, CFG)) is None
    # signatures are stable across processes: a stored one equals a fresh one
    assert (minhash_signature(original, CFG) == minhash_signature(original, CFG)).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"dup_line_frac": 1.5}, "dup_line_frac must lie within"), ({"languages": ["english"]}, "ISO 639-1")],
)
def test_bad_filter_config_is_rejected(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        FilterConfig(**kwargs)


def test_filter_shard_drops_a_near_duplicate_naming_the_document_it_repeats(tmp_path, store):
    """Through the lineage store: the second of two near-identical files is dropped, naming the first by source."""
    from lc_assets.defs.corpus.assets import ingest_shard
    from lc_assets.defs.filters.assets import filter_shard
    from lc_assets.defs.resources import TokenizerResource
    from lc_assets.lib.corpus.sources import SourceSpec

    original = make_text(70, 300)
    words = original.split(" ")
    for i in random.Random(5).sample(range(len(words)), len(words) // 100):  # 1% of the words changed
        words[i] = "changed"
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "a_original.txt").write_text(original)
    (folder / "b_copy.txt").write_text(" ".join(words))
    (folder / "c_other.txt").write_text(make_text(71, 300))
    ingest_shard("s", SourceSpec(kind="local", path=str(folder)), store, TokenizerResource(), "ingest", 1 << 20)

    counts = filter_shard("s", store, CFG, "filter")

    assert counts == {"decided": 3, "kept": 2, "dropped_near_duplicate": 1}
    rows = store.query(
        "SELECT d.source, f.kept, f.reason, f.detail, f.duplicate_of FROM filter_decisions f "
        "JOIN documents d USING (document_id) ORDER BY d.source"
    )
    by_name = {source.rsplit("/", 1)[-1]: row for source, *row in rows}
    original_id = store.scalar("SELECT document_id FROM documents WHERE source LIKE '%a_original.txt'")
    kept, reason, detail, duplicate_of = by_name["b_copy.txt"]
    assert not kept and reason == "near_duplicate" and duplicate_of == original_id
    assert "a_original.txt" in detail and original_id[:12] in detail and "estimated Jaccard similarity" in detail
    assert by_name["a_original.txt"][0] and by_name["c_other.txt"][0]
