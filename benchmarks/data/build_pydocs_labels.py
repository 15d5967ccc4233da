"""Build the Python-docs run's labelled pairs (``lc_assets_tests/generation/data/pydocs_attempts.jsonl``).

The run: a corpus nobody on the project had read — the Python 3.11 documentation's ``library/os.html``,
``library/stdtypes.html`` and ``howto/logging-cookbook.html`` (one chunk each), Qwen2.5-Coder-1.5B-Instruct
Q4_K_M (the embedded model) on CPU, ``max_retries_per_step: 0``: 152 steps, 33 pairs (docs/qa_quality.md,
"A third unseen corpus: the Python docs"). Each accepted pair was read next to the text its prompt showed (the
windows rebuilt from lineage by ``lc_assets.lib.lineage.replay``; ``lc-assets lineage prompt ID --json`` gives the
exact messages). Labels, as for the Rust book (``build_rust_book_labels.py``):

- an accepted pair is ``good``, ``weak`` (true and supported but vague, a restatement, or a question the answer
  does not quite answer) or ``bad`` (wrong, invented, or a copy of another pair);
- a refused attempt is ``right`` to refuse unless the pair is good and grounded (then ``wrong``). Only the one
  refused attempt that today's checks accept is labelled; the other 118 refusals are not in the fixture.

Each row carries the raw output and the shown windows as (paragraph index, chunk start, chunk end, text), so a
test can validate it without the lineage file.

    python benchmarks/data/build_pydocs_labels.py LINEAGE.duckdb
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.data.build_rust_book_labels import write_labelled_attempts

OUT = Path(__file__).resolve().parents[2] / "lc_assets_tests" / "generation" / "data" / "pydocs_attempts.jsonl"

OS, ST, LC = "57a0578c1bcf8c16fc489e11739f2d56", "6b1b5378c83d18abbfd041a0935a2bcf", "e901bc95f6e3cacec6338a260005f421"

# prompt_id -> (label, why); the numbers are the pair's place in the run's reading sheet (1-33)
LABELS: dict[str, tuple[str, str]] = {
    f"{OS}:0": (
        "good",
        "#1 FreeBSD and macOS: 'On some platforms, including FreeBSD and macOS, setting environ may cause memory leaks'",
    ),
    f"{OS}:13": (
        "bad",
        "#2 wrong subject: the quoted 3.8 change (return the substitution path) is os.readlink's; the answer pins it on os.remove, whose heading follows the quote",
    ),
    f"{OS}:14": ("good", "#3 fpathconf vs fstat: both definitions' first sentences"),
    f"{OS}:21": (
        "bad",
        "#4 asks about UTF-8 mode and command-line arguments; the answer is the unrelated close() exit-status sentence",
    ),
    f"{OS}:24": ("weak", "#5 a why-question answered by restating 'serves only for debugging purposes', twice"),
    f"{ST}:2": (
        "weak",
        "#6 'the source format of memoryviews' is garbled; the answer is a true sentence about exporters",
    ),
    f"{ST}:3": ("weak", "#7 asks for 'two things'; the answer gives the definition of stability"),
    f"{ST}:7": ("good", "#8 add() and remove() for the mutable set type"),
    f"{ST}:8": ("weak", "#9 the alternate form's meaning for 'o' only, given as the meaning in general"),
    f"{ST}:9": ("weak", "#10 a why-question answered by restating the note"),
    f"{ST}:13": ("good", "#11 reversed(dictview): a reverse iterator, in reverse insertion order"),
    f"{ST}:16": ("good", "#12 str.count: the definition"),
    f"{ST}:17": ("bad", "#13 invented: str.format is not how the text formats a tuple (it is about printf-style %)"),
    f"{ST}:24": ("good", "#14 the uppercasing algorithm: section 3.13 of the Unicode Standard"),
    f"{ST}:28": ("good", "#15 genericalias.__args__ is a tuple of the generic types"),
    f"{LC}:0": ("weak", "#16 asks for a 'default threshold', answered with the flush conditions"),
    f"{LC}:4": ("good", "#17 contextvars: context-local storage for threading and asyncio"),
    f"{LC}:5": ("good", "#18 chowntest.py sets ownership to the pulse user and group"),
    f"{LC}:11": ("weak", "#19 a why-question answered by restating the sentence"),
    f"{LC}:13": ("weak", "#20 'the first approach' does not stand alone; the answer is the text's reason"),
    f"{LC}:16": ("weak", "#21 the Qt example's format string, right, but 'the logger' is unnamed"),
    f"{LC}:19": (
        "bad",
        "#22 'the rotator in the Django documentation': the Django sentence ends the section before the rotator's",
    ),
    f"{LC}:25": ("good", "#23 override makePickle() for another serialization scheme"),
    f"{LC}:30": ("bad", "#24 the answer is a log line copied from an example's output, not an answer"),
    f"{LC}:36": (
        "weak",
        "#25 process() adds contextual information; the __dict__ merge is the 'extra' mechanism, loosely",
    ),
    f"{LC}:38": (
        "bad",
        "#26 inverted: the DEBUG message only shows up in the file; the answer says DEBUG goes to both",
    ),
    f"{LC}:40": ("weak", "#27 'service multiple QueueHandlers' answered with a description of QueueListener"),
    f"{LC}:42": ("good", "#28 configuring handlers, formatters and filters is the application developer's job"),
    f"{LC}:45": (
        "bad",
        "#29 invented purpose of a parent logger (the quotes are about getLogger returning one object)",
    ),
    f"{LC}:46": ("good", "#30 QThread: better integration with other Qt components"),
    f"{LC}:47": ("bad", "#31 'eleven messages': the text says eleven emails (102 messages)"),
    f"{LC}:60": ("bad", "#32 near-duplicate of #21: the same quote, the question reworded (ROUGE-L < 0.7)"),
    f"{LC}:64": ("bad", "#33 invented 'the most common format string'"),
    f"{ST}:32": (
        "wrong",
        "refused in the run, accepted since the operator words: math.floor(x), 'the greatest Integral <= x'",
    ),
}


def main() -> None:
    write_labelled_attempts(sys.argv[1], LABELS, OUT, None, every_step=False)


if __name__ == "__main__":
    main()
