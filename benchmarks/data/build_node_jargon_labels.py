"""Build the held-out run's labelled pairs (``lc_assets_tests/generation/data/node_jargon_attempts.jsonl``).

The run (2026-12-03): texts nobody on the project had read, chosen after the grounding checks of
``lib/generation/grounding_checks.py`` were written — Node.js 20's ``stream.html`` and ``fs.html`` API pages (as
Debian ships them) and the first 450,000 bytes of the Jargon File 4.4 (``jargon.txt``): ``fs.html`` was dropped by
the paragraph-count repetition rule (off by default since), so two chunks, 140k tokens. Qwen2.5-Coder-1.5B-Instruct
Q4_K_M (the embedded model) on CPU, the demo profile's bounds, ``max_retries_per_step: 0``, stopped by SIGTERM
after 86 steps: **23 pairs** (docs/qa_quality.md, "A held-out corpus"). Each accepted pair was read next to the
text its prompt showed (``lc-assets review --export``). Labels as for the Rust book and the Python docs
(``build_rust_book_labels.py``): ``good``, ``weak`` (true and supported but vague, evasive or half an answer) or
``bad`` (wrong, invented, garbled or a conflation); a refusal is ``right`` unless the pair is good and grounded.
Only the one refusal that the checks of the day before would have accepted is labelled. The same chunks were then run
with ``earlier_pairs: 0`` (31 steps, 16 pairs, labelled ``e1``-``e16``; the Node.js chunk without its page chrome).

    python benchmarks/data/build_node_jargon_labels.py LINEAGE.duckdb
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.data.build_rust_book_labels import write_labelled_attempts

OUT = Path(__file__).resolve().parents[2] / "lc_assets_tests" / "generation" / "data" / "node_jargon_attempts.jsonl"

S, J = "251180c5f4abf44e5d35f46ad8caf72d", "7748ee2a626cd94bf3789752d23983cb"  # stream.html, the Jargon File
S0, J0 = "74d170e6209948358dafdc054ac99f2c", "b7d9d0b2f53bee2cb827d1483b2bfa47"  # the same with earlier_pairs: 0

# prompt_id -> (label, why); the numbers are the pair's place in the reading sheet (1-23)
LABELS: dict[str, tuple[str, str]] = {
    # fmt: off
    f"{S}:5": (
        "weak",
        "#1 'How are the internal buffering mechanics implemented?' answered 'an internal implementation detail that may change': true, evasive",
    ),
    f"{S}:13": ("good", "#2 readableLength: the number of bytes (or objects) in the queue ready to be read"),
    f"{S}:23": ("good", "#3 readable._read(size): the size argument is advisory, how much data to fetch"),
    f"{S}:24": (
        "bad",
        "#4 invented: 'no restrictions on the number of options' of a Transform stream; the quotes are about highWaterMark and the Transform class ('restrictions' is the one word missing)",
    ),
    f"{S}:25": ("weak", "#5 trivial: 'the method that prints the words array' is console.log(words) of an example"),
    f"{S}:31": (
        "weak",
        "#6 'the stream' of which method? the answer gives the signal option and drops the main condition (fn returns a truthy value)",
    ),
    f"{S}:32": (
        "weak",
        "#7 half an answer: pause()/unpipe() switch back to paused mode; switching to flowing is not answered",
    ),
    f"{S}:35": ("weak", "#8 asks for use cases; the answer restates PassThrough's definition"),
    f"{S}:36": (
        "weak",
        "#9 true of readable streams (the Readable constructor's note says so), but the evidence is the writable stream's sentence",
    ),
    f"{S}:37": (
        "weak",
        "#10 from a code comment ('new data received in buffer'); the 'readable' event also fires at the end of the stream",
    ),
    f"{J}:2": ("good", "#11 the Jargon File was begun in 1975"),
    f"{J}:10": (
        "bad",
        "#12 garbled: 'the two factors that make the Breidbart Index worse than ECP'; the answer says EMP is worse than ECP",
    ),
    f"{J}:13": (
        "good",
        "#13 a mere running binary is not a full release; a source tree that builds with standard tools is",
    ),
    f"{J}:17": ("good", "#14 the bit bucket: originally the mythical receptacle for bits shifted off a register"),
    f"{J}:20": (
        "weak",
        "#15 asks why 'Bad Thing' is capitalized; the answer says that it is (the text gives the 1066 And All That origin)",
    ),
    f"{J}:25": (
        "bad",
        "#16 conflation: the '# leader' question answered with the barf entry's 'closest hackish equivalent of the Valspeak gag me with a spoon', shown in another window",
    ),
    f"{J}:27": ("weak", "#17 a definition (ad-hockery) turned into a why-question the answer does not answer"),
    f"{J}:29": ("weak", "#18 'clone' given its second sense only, without saying so (the first: an exact duplicate)"),
    f"{J}:30": (
        "weak",
        "#19 click of death: the head bumping its stops misaligns it; the answer makes the noise the cause and adds 'impossible to access the disk'",
    ),
    f"{J}:32": ("good", "#20 code monkey: anyone who writes code for a living (sense 2)"),
    f"{J}:35": ("bad", "#21 garbled: '*Bzzzzt*' is no abbreviation of 'buzzer', and nothing says how it is pronounced"),
    f"{J}:38": (
        "bad",
        "#22 invented framing: an attoparsec (about 3.1 cm) is not 'the smallest measurable distance between two atoms'",
    ),
    f"{J}:42": ("bad", "#23 'what type of operating system' answered 'Unix techies'"),
    f"{J}:12": (
        "right",
        "refused (off_topic_evidence): 'The Breidbart Index' as 'the most detailed and authoritative reference for a particular language'",
    ),
    # fmt: on
}


# the same chunks with `earlier_pairs: 0` (its own generation config, sections and masks): 31 steps, 16 pairs
LABELS.update(
    {
        f"{S0}:2": ("good", "e1 the 'error' event: when a Readable emits it (an internal failure, an invalid chunk)"),
        f"{S0}:4": ("good", "e2 the 'close' event: the stream and its underlying resources have been closed"),
        f"{S0}:5": ("bad", "e3 the answer ends '(i.e.': a shown piece cut at 'i.e.' copied as the answer"),
        f"{S0}:7": ("good", "e4 resume() vs setEncoding(): both definitions"),
        f"{S0}:9": ("weak", "e5 'the AbortSignal allows you to pass it inside an options object': garbled first half"),
        f"{S0}:11": ("weak", "e6 'When was the signal option added?' -- of which API (stream.finished's history)?"),
        f"{S0}:12": ("good", "e7 readable.drop() and readable.take(): the first limit chunks dropped / taken"),
        f"{J0}:0": ("bad", "e8 'brute force' asked of a quote about the brown-paper-bag bug (headword not quoted)"),
        f"{J0}:1": ("weak", "e9 a why-question answered by restating 'the term spread to MIT and CMU early'"),
        f"{J0}:3": ("weak", "e10 black/white/gray hat: only the spamfighters' sense (spam-friendliness of ISPs)"),
        f"{J0}:5": ("good", "e11 BrokenWindows: properly called OpenWindows"),
        f"{J0}:8": ("weak", "e12 clone: sense 1, with 'An exact duplicate:' written twice"),
        f"{J0}:10": ("weak", "e13 asks the names of beta and zeta, answers their pronunciation"),
        f"{J0}:13": ("bad", "e14 'How did people originally believe this term got its name?' -- which term?"),
        f"{J0}:14": (
            "weak",
            "e15 'the pun used in the ASCII art': A Bee in the Carrot Patch, a rebus on character names",
        ),
        f"{J0}:16": ("good", "e16 binary four: the analogy between binary and the fingers of a hand"),
    }
)


def main() -> None:
    write_labelled_attempts(sys.argv[1], LABELS, OUT, None, every_step=False)


if __name__ == "__main__":
    main()
