"""Build the Rust book run's labelled attempts (``lc_assets_tests/generation/data/rust_book_attempts.jsonl``).

The run: *The Rust Programming Language* (the toolchain's ``print.html``), Qwen2.5-Coder-1.5B-Instruct Q4_K_M,
``max_retries_per_step: 0``, 79 steps, 22 pairs, 57 refused attempts (docs/qa_quality.md, "An unseen book
through the product"). Every attempt was read next to the text its prompt showed (the windows rebuilt from
lineage by ``lc_assets.lib.lineage.replay``). Labels:

- a refused attempt is ``right`` to refuse unless the pair is good and grounded (then ``wrong``);
- an accepted pair is ``good``, ``weak`` (true and supported but vague or odd) or ``bad``.

Each row carries the raw output and, for the examples the tests use (``windows`` not null), the shown
windows as (paragraph index, chunk start, chunk end, text) so a test can validate it without the lineage file.

    python benchmarks/data/build_rust_book_labels.py LINEAGE.duckdb
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from pathlib import Path

from lc_assets.lib.lineage.replay import stored_steps
from lc_assets.lib.lineage.store import LineageStore

OUT = Path(__file__).resolve().parents[2] / "lc_assets_tests" / "generation" / "data" / "rust_book_attempts.jsonl"

A, B, C = "287c7e6b7564422d8d53387626f0bfc2", "3ad04af0ab4367d9619ae051bbbb0214", "dcc3223573f31685a8321f3a88208a5c"

# prompt_id -> (label, why); every refused attempt and every accepted pair of the run
LABELS: dict[str, tuple[str, str]] = {
    # fmt: off
    f"{A}:0": ("bad", "answer cut at the 300-char bound mid-word ('to call the `l')"),
    f"{A}:1": ("weak", "default privacy rule answered with a side remark about child modules"),
    f"{A}:2": ("bad", "circular: 'empowered by the principle of empowerment'"),
    f"{A}:3": (
        "right",
        "long-range step, far window unused; the question ('optional value in the Result enum') is garbled",
    ),
    f"{A}:4": ("weak", "char 'compared' with tuple: two unrelated definitions"),
    f"{A}:5": ("right", "'the given code snippet'"),
    f"{A}:6": ("right", "verbatim copy of a listed earlier question"),
    f"{A}:7": (
        "right",
        "missing word 'file', but 'two use statements in src/lib.rs' is one listing's content: not standalone",
    ),
    f"{A}:8": ("right", "verbatim copy of a listed earlier question"),
    f"{A}:9": ("right", "trait objects 'provide a more flexible and dynamic approach': invented"),
    f"{A}:10": ("good", "enum over struct: the book's sentence"),
    f"{A}:11": ("right", "string slice vs String: definitions not in the shown text"),
    f"{A}:12": ("right", "answer cut at its bound; adds unsupported consequences"),
    f"{A}:13": ("right", "'24 bytes' for \"Hola\": wrong (the text says 4)"),
    f"{A}:14": ("right", "verbatim copy of a listed earlier question"),
    f"{A}:15": ("weak", "'cargo build' given as the way to update dependencies"),
    f"{A}:16": ("right", "'integers are more efficient for small to medium-sized data': invented"),
    f"{A}:17": ("right", "nonsense reason about the first word's slice"),
    f"{A}:18": ("right", "answer cut at its bound; 'data corruption' invented"),
    f"{A}:19": ("right", "missing word 'bytes': 'the integer type is 4 bytes' is invented"),
    f"{A}:20": ("weak", "'types of errors' answered with Result's variants"),
    f"{A}:21": ("good", "the borrowing rule, verbatim"),
    f"{A}:22": ("right", "answer cut at its bound"),
    f"{A}:23": ("right", "answer cut at its bound; 'sequence of UTF-8 encoded characters' contradicts the text"),
    f"{A}:24": ("good", "package with only src/main.rs: binary crate my-project"),
    f"{A}:25": ("right", "verbatim copy of a listed earlier question"),
    f"{A}:26": ("good", "when a variable is valid"),
    f"{A}:27": ("right", "Ok/Err: 'useful for debugging' invented"),
    f"{A}:28": (
        "bad",
        "inverted: the book says two items of one name cannot both be brought in; the answer calls it the convention",
    ),
    f"{A}:29": ("weak", "'the user' of an example: not standalone"),
    f"{A}:30": ("good", "Debug trait, the book's sentence"),
    f"{A}:31": ("right", "verbatim copy of a listed earlier question; answer about parse"),
    f"{A}:32": (
        "wrong",
        "can_hold condition: 'width greater than ... height greater than' is the shown code "
        "self.width > other.width && self.height > other.height (a weak question: names rect1/rect2)",
    ),
    f"{B}:0": (
        "right",
        "missing word 'specific', but the question ('which parameters are generic and which are not') "
        "is confused: all four are generic",
    ),
    f"{B}:1": ("right", "'an arbitrary number of arguments': invented"),
    f"{B}:2": ("right", "'the given code'"),
    f"{B}:3": ("good", "the `x` method of Point<T>"),
    f"{B}:4": ("right", "answer cut at its bound"),
    f"{B}:5": (
        "wrong",
        "long-range step answered from one window: the `parent` field pair is good and grounded; "
        "refused by the long-range contract (left as is, see docs)",
    ),
    f"{B}:6": ("right", "'the new test' is not standalone; 'designed to ensure ... verifying' paraphrases a purpose"),
    f"{B}:7": ("right", "lists 'the' among the sent values"),
    f"{B}:8": ("right", "two questions in one; the answer covers the first"),
    f"{B}:9": ("right", "missing word 'simultaneous': 'one person can watch the TV' is wrong (others come in)"),
    f"{B}:10": ("right", "'can lead to errors if the inferred types are incorrect': invented"),
    f"{B}:11": ("right", "two questions; answer cut at its bound (and turns Chinese)"),
    f"{B}:12": ("right", "answer cut at its bound; `width` is no method of Point<T>"),
    f"{B}:13": ("right", "'possible that the function is used for testing purposes': speculation"),
    f"{B}:14": (
        "wrong",
        "tests/common/mod.rs avoids a 'common' section in the test output and shares code with the "
        "integration tests: two neighbouring shown sentences say exactly this",
    ),
    f"{B}:15": ("right", "'the given code'"),
    f"{B}:16": ("right", "long-range far window unused; the answer restates a non-reason"),
    f"{B}:17": ("right", "long-range far window unused"),
    f"{B}:18": ("right", "answer cut at its bound"),
    f"{B}:19": ("right", "two questions; answer cut at its bound; unwrap_or_else is no Option default"),
    f"{B}:20": ("right", "'interacting with external systems': invented"),
    f"{C}:0": ("bad", "'three threads, Worker 0, Worker 2 and Worker 3' supported by `let (x, y) = (1, 2, 3);`"),
    f"{C}:1": ("right", "circular answer to a garbled question"),
    f"{C}:2": ("good", "Debug trait enables {:?} formatting"),
    f"{C}:3": ("right", "verbatim copy of a listed earlier question"),
    f"{C}:4": ("right", "near copy of a listed earlier question; '4' for an unnamed pool"),
    f"{C}:5": ("right", "near copy of a listed earlier question"),
    f"{C}:6": ("right", "'mentioned in the given excerpt'"),
    f"{C}:7": ("right", "verbatim copy of a listed earlier question"),
    f"{C}:8": ("good", "range check at compile time"),
    f"{C}:9": ("weak", "'the default type parameter for the trait': which trait?"),
    f"{C}:10": ("good", "Button implements Draw"),
    f"{C}:11": (
        "right",
        "a false duplicate (ROUGE-L 0.71 to 'What is the purpose of the Debug trait?'), but the "
        "long-range step's far window is unused: refused either way",
    ),
    f"{C}:12": ("good", "the syn crate"),
    f"{C}:13": ("right", "two questions; answer cut at its bound"),
    f"{C}:14": ("right", "Debug trait + keywords: 'two' features listed as four; Debug not shown"),
    f"{C}:15": ("right", "ThreadPool fields: not in the shown text"),
    f"{C}:16": ("bad", "answer cut at its bound ('not yet part a')"),
    f"{C}:17": ("right", "near copy of a listed earlier question"),
    f"{C}:18": ("right", "std::net 'TCP and UDP sockets': not in the shown text"),
    f"{C}:19": ("right", "'the original APIs remain unchanged': invented contrast"),
    f"{C}:20": ("right", "answer cut at its bound"),
    f"{C}:21": ("bad", "answer cut at its bound ('We've chosen this')"),
    f"{C}:22": ("right", "two questions; symbol classes invented"),
    f"{C}:23": ("right", "two questions; answer cut at its bound"),
    f"{C}:24": ("right", "'the code example in Excerpt 2'"),
    # fmt: on
}

#: the attempts the tests validate on their own: shown windows stored with them
TEST_EXAMPLES = {f"{A}:7", f"{A}:13", f"{A}:32", f"{B}:0", f"{B}:9", f"{B}:14", f"{C}:0", f"{C}:19"}


def write_labelled_attempts(
    lineage: str, labels: dict[str, tuple[str, str]], out: Path, with_windows: Collection[str] | None, every_step: bool
) -> None:
    """One row per labelled step of a lineage file's run (its last attempt) into ``out`` (JSON Lines). Steps in
    ``with_windows`` (all when None) carry their shown windows; ``every_step``: each step of the run must be
    labelled (otherwise unlabelled steps are left out)."""
    rows = []
    for st in stored_steps(LineageStore(lineage)):
        if st.prompt_id not in labels and not every_step:
            continue
        label, why = labels[st.prompt_id]
        attempt = st.attempts[-1]
        windows = None
        if with_windows is None or st.prompt_id in with_windows:
            windows = [[[p.index, p.char_start, p.char_end, p.text] for p in w.paragraphs] for w in st.windows]
        rows.append(
            {
                "prompt_id": st.prompt_id,
                "stored_code": attempt.code,
                "label": label,
                "why": why,
                "raw_text": attempt.raw_text,
                "title": st.title,
                "long_range": st.long_range,
                "focus_window": st.focus_window,
                "earlier_questions": [p.question for p in st.earlier_pairs],
                "windows": windows,
            }
        )
    missing = set(labels) - {r["prompt_id"] for r in rows}
    if missing:
        raise SystemExit(f"labels for attempts not in {lineage}: {sorted(missing)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} attempts -> {out}")


def main() -> None:
    write_labelled_attempts(sys.argv[1], LABELS, OUT, TEST_EXAMPLES, every_step=True)


if __name__ == "__main__":
    main()
