"""Task generators: lengths fit RULER's budget, needles/answers are where they should be, determinism."""

from __future__ import annotations

import re

import pytest

from lc_assets.lib.ruler import ALL_TASKS, RulerTaskBuilder, get_task
from lc_assets.lib.ruler.base import derive_rng
from lc_assets.lib.ruler.fwe import zeta_counts
from lc_assets.lib.ruler.niah import DEPTHS, NEEDLE

NON_QA = [t for t in ALL_TASKS if not t.startswith("qa_")]


@pytest.fixture(scope="module")
def llama_builder(llama3, essay_text, qa_files) -> RulerTaskBuilder:
    return RulerTaskBuilder(
        llama3,
        essay_text=essay_text,
        squad_source=str(qa_files["squad"]),
        hotpotqa_source=str(qa_files["hotpotqa"]),
    )


@pytest.fixture(scope="module")
def llama_builds(llama_builder):
    return {(t, n): llama_builder.build(t, n, 4) for t in ALL_TASKS for n in (2048, 4096)}


def _increment_tokens(builder: RulerTaskBuilder, task: str, length: int, start: int) -> float:
    """Tokens that one RULER decrement step (inc units) removes, on sample 0's material."""
    gen = builder._generator(task, length)
    m = gen.draw(derive_rng(builder.seed, task, length, 0), start, index=0)
    return gen.estimate(m, start) - gen.estimate(m, max(start - gen.inc, 1))


@pytest.mark.parametrize("task", ALL_TASKS)
def test_lengths_are_exact_and_within_budget(task, llama_builds, llama_builder, llama3) -> None:
    for n in (2048, 4096):
        build = llama_builds[(task, n)]
        assert build.ok, build.reason
        assert [s.index for s in build.samples] == [0, 1, 2, 3]
        spec = get_task(task)
        budget = n - spec.tokens_to_generate
        step = _increment_tokens(llama_builder, task, n, build.stats["start_units"])
        for s in build.samples:
            assert s.length == llama3.count(s.prompt)  # exact count of the final prompt
            assert s.length <= budget
            assert s.length_with_generation == s.to_ruler_record()["length"] <= n
            # RULER's tolerance: the largest of start, start-inc, ... that fits, and start is the largest
            # count whose probe fits: so a sample is at most ~2 increments (plus sample variation) short
            # fwe: a sample's random vocabulary (a few words make most of the text) moves its token count
            # by up to ~15% at the same word count, and RULER's rule only ever steps down from the start
            spread = 0.2 if task == "fwe" else 0.03
            assert s.length > budget - 2 * step - spread * budget, (task, n, s.length, step)
            assert s.task == task and s.max_seq_length == n and s.outputs


@pytest.mark.parametrize("task", NON_QA)
def test_next_larger_haystack_would_not_fit(task, llama3, essay_text) -> None:
    """Per sample RULER keeps the largest of start, start-inc, ...: one increment more must overflow."""
    builder = RulerTaskBuilder(llama3, essay_text=essay_text)
    gen = builder._generator(task, 4096)
    build = builder.build(task, 4096, 3)
    for s in build.samples:
        if s.num_units < build.stats["start_units"]:
            m = gen.draw(derive_rng(42, task, 4096, s.index), build.stats["start_units"], index=s.index)
            bigger = gen.render(m, s.num_units + gen.inc).text
            assert llama3.count(bigger) > gen.budget


def test_answer_prefix_split_and_prompt(llama_builds) -> None:
    s = llama_builds[("niah_single_2", 4096)].samples[0]
    assert s.answer_prefix.startswith(" The special magic number for ") and s.answer_prefix.endswith(" is")
    assert s.prompt == s.input + s.answer_prefix
    assert llama_builds[("vt", 4096)].samples[0].answer_prefix.endswith("they are: ")
    assert llama_builds[("qa_1", 4096)].samples[0].answer_prefix == " Answer:"


@pytest.mark.parametrize("task", [t for t in ALL_TASKS if t.startswith("niah")])
def test_niah_needles_present_at_their_positions(task, llama_builds, llama3) -> None:
    spec = get_task(task).params
    for s in llama_builds[(task, 4096)].samples:
        needles = re.findall(r"One of the special magic \w+ for (\S+) is: (\S+)\.", s.input)
        n_needles = spec["num_needle_k"] * spec["num_needle_v"]
        if spec["type_haystack"] != "needle":
            assert len(needles) == n_needles
        assert len(s.outputs) == spec["num_needle_q"] * spec["num_needle_v"]
        for answer in s.outputs:
            assert f"is: {answer}." in s.input  # every gold value sits in a needle in the context
            if spec["type_needle_v"] == "numbers":
                assert re.fullmatch(r"\d{7}", answer)
            else:
                assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", answer)
        assert len(s.needle_char_positions) == n_needles == len(s.needle_depths) == len(s.needle_token_positions)
        for pos, tok_pos in zip(s.needle_char_positions, s.needle_token_positions, strict=True):
            assert s.input[pos:].startswith("One of the special magic ")
            assert abs(llama3.count(s.input[:pos]) - tok_pos) <= max(16, 0.01 * s.length)
        if spec["type_haystack"] == "essay":
            assert all(d in DEPTHS for d in s.needle_depths)
            assert len(set(s.needle_depths)) == n_needles  # distinct depths, as random.sample
            # the needle sits at its depth: share of haystack text before it ~ depth
            start = s.input.index("\n") + 1
            end = s.input.rindex("\n")
            for pos, depth in zip(s.needle_char_positions, s.needle_depths, strict=True):
                assert abs(100 * (pos - start) / (end - start) - depth) < 8
        else:
            assert all(0 <= d <= 100 for d in s.needle_depths)


def test_niah_templates(llama_builds) -> None:
    single = llama_builds[("niah_single_3", 4096)].samples[0]
    assert single.input.startswith("A special magic uuid is hidden within the following text.")
    assert "One of the special magic uuids for " in single.input  # needle stays plural
    multi = llama_builds[("niah_multiquery", 4096)].samples[0]
    assert multi.input.startswith("Some special magic numbers are hidden")
    assert re.search(r"for \S+, \S+, \S+, and \S+ mentioned in the provided text\?$", multi.input)
    assert len(multi.outputs) == 4
    noise = llama_builds[("niah_single_1", 4096)].samples[0]
    assert "The grass is green. The sky is blue." in noise.input
    assert NEEDLE.split("{")[0] in noise.input


def test_vt_chain_and_example(llama_builds) -> None:
    s = llama_builds[("vt", 4096)].samples[0]
    a, b, c, d, e = s.outputs
    value = re.findall(r"assigned the value (\d{5}) in the text above", s.input)[-1]
    assert 10000 <= int(value) <= 99998
    lines = s.input.split("\n")
    chain = [f"VAR {a} = {value}", f"VAR {b} = VAR {a} ", f"VAR {c} = VAR {b} ", f"VAR {d} = VAR {c} "]
    positions = [lines.index(x) for x in chain + [f"VAR {e} = VAR {d} "]]
    assert positions == sorted(positions)
    # the one-shot example: 3-letter names, the answer after two spaces, before the task text
    example = re.search(r"they are:  ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3}) ([A-Z]{3})\n", s.input)
    assert example and s.input.index(example.group(0)) < s.input.rindex("Memorize and track")
    assert "12345" not in s.input


def test_cwe_counts(llama_builds) -> None:
    for n, (common, uncommon) in ((4096, (30, 3)), (2048, (6, 1))):
        s = llama_builds[("cwe", n)].samples[0]
        main = s.input[s.input.rindex("Below is a numbered list") :]
        words = re.findall(r"\d+\. (\S+)", main.split("\n")[1])
        assert words and all(words.count(w) == common for w in s.outputs)
        others = set(words) - set(s.outputs)
        assert others and all(words.count(w) == uncommon for w in others)
        assert len(s.outputs) == 10 and "Answer: The top 10 words" in s.input  # one-shot example first


def test_fwe_zeta_counts(llama_builds) -> None:
    assert zeta_counts(674, 80, 2.0)[:4] == [409, 102, 45, 25]  # int(674 * k^-2 / (pi^2/6))
    s = llama_builds[("fwe", 4096)].samples[0]
    words = s.input.split("coded words. ")[1].split("\nQuestion:")[0].split(" ")
    counts = zeta_counts(s.num_units, (4096 - 50) // 50, 2.0)
    assert words.count("...") == counts[0]
    assert [words.count(w) for w in s.outputs] == counts[1:4]
    assert all(re.fullmatch(r"[a-z]{6}", w) for w in s.outputs)


def test_qa_gold_in_context_and_question_order(llama_builds) -> None:
    squad = llama_builds[("qa_1", 4096)].samples
    assert [s.outputs for s in squad] == [
        ["Quenta00", "Quenta00"],
        ["Quenta01"] * 2,
        ["Quenta02"] * 2,
        ["Quenta03"] * 2,
    ]
    for s in squad:
        assert s.outputs[0] in s.input and re.search(r"Document 1:\n", s.input)
    hotpot = llama_builds[("qa_2", 2048)].samples
    for i, s in enumerate(hotpot):
        assert s.outputs == [f"Fennix{i}"] and f"Its capital is Fennix{i}." in s.input


def test_qa_not_run_when_dataset_missing(llama3, tmp_path) -> None:
    builder = RulerTaskBuilder(llama3, squad_source=str(tmp_path / "dev-v2.0.json"), hotpotqa_source=None)
    squad = builder.build("qa_1", 4096, 3)
    assert not squad.ok and squad.samples == [] and "not found" in squad.reason
    hotpot = builder.build("qa_2", 4096, 3)
    assert hotpot.status == "not_run" and "no source" in hotpot.reason
    bad = tmp_path / "broken.json"
    bad.write_text("{not json", encoding="utf-8")
    assert "could not load" in RulerTaskBuilder(llama3, squad_source=str(bad)).build("qa_1", 4096, 1).reason


def test_qa_hf_name_offline_is_not_run(llama3, monkeypatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub (offline mode is enabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    build = RulerTaskBuilder(llama3, squad_source="rajpurkar/squad_v2").build("qa_1", 4096, 2)
    assert build.status == "not_run" and "offline" in build.reason


@pytest.mark.parametrize("task", NON_QA)
def test_deterministic_and_order_independent(task, small_tokenizer, essay_text) -> None:
    def build(indices_first: bool):
        b = RulerTaskBuilder(small_tokenizer, essay_text=essay_text, seed=3)
        if indices_first:  # build another task/length first: must not change anything
            b.build("niah_single_1", 2048, 2)
        return b.build(task, 2048, 3)

    one, two = build(False), build(True)
    assert [s.to_dict() for s in one.samples] == [s.to_dict() for s in two.samples]
    part = RulerTaskBuilder(small_tokenizer, essay_text=essay_text, seed=3).build(task, 2048, 2, start_index=1)
    assert [s.to_dict() for s in part.samples] == [s.to_dict() for s in one.samples[1:]]
    other_seed = RulerTaskBuilder(small_tokenizer, essay_text=essay_text, seed=4).build(task, 2048, 3)
    assert [s.input for s in other_seed.samples] != [s.input for s in one.samples]
    assert len({s.input for s in one.samples}) == 3  # samples differ from each other


def test_any_token_counter_works(small_tokenizer, essay_text) -> None:
    builder = RulerTaskBuilder(small_tokenizer, essay_text=essay_text, model_template_type="meta-chat")
    for task in NON_QA:
        for s in builder.build(task, 3000, 2).samples:
            assert s.length == small_tokenizer.count(s.prompt) <= 3000 - s.tokens_to_generate
            assert s.input.startswith("[INST] ") and "[/INST]" in s.input


def test_essay_tasks_need_the_essay(llama3) -> None:
    with pytest.raises(ValueError, match="essay_text"):
        RulerTaskBuilder(llama3).build("niah_single_2", 4096, 1)
