"""Build `labelled_pairs.jsonl`: real pairs from lineage files of real runs, as the judge reads them, with labels.

    python benchmarks/data/build_labelled_pairs.py RUN.duckdb [RUN2.duckdb ...] [-o labelled_pairs.jsonl]

Each lineage file is copied to a temporary folder first (opening a store upgrades its schema: the
originals are never written). Every accepted pair of the listed runs that has a label below is written with
its document title, question, answer, evidence quotes and the shown text around them (`judge.prompt.
render_context`, 400 characters each side: PairJudgeConfig's default), plus:

- label: good (a standalone question a reader of the document can answer, fully supported by the marked
  text, worth training on), weak (true and supported but vague, odd or with an unnamed subject), bad (wrong:
  the marked text does not state the answer, or states something else);
- reason: one line from reading the pair next to its evidence;
- labelled_by: "docs" when docs/qa_quality.md's readings of the run give the verdict, "author" when the
  author of this benchmark labelled it by reading the evidence (pairs the docs do not cover);
- split: "dev" (about 40%, by a hash of the pair id) may be used to change the prompt; "test" is held out.

The pairs were made on 2026-12-02 by the embedded Qwen2.5-Coder-1.5B-Instruct through the product
(`lc-assets materialize`): the demo shard (documentation: PostgreSQL, CPython, Debian), a corpus nobody had
read (Newton's Opticks, Vim's options.txt) and the focus-window demo run, as docs/qa_quality.md describes, and
an earlier one-pair-per-section demo run the docs do not read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from lc_assets.lib.judge.prompt import judge_input
from lc_assets.lib.lineage import LineageStore
from lc_assets.lib.lineage.review import load_pairs

CONTEXT_CHARS = 400
OUT = Path(__file__).parent / "labelled_pairs.jsonl"

#: generation step (prompt id: section id:step) -> (label, reason, labelled_by); the accepted pair of the step is used
D, A = "docs", "author"
# one labelled pair per line
# fmt: off
LABELS: dict[str, tuple[str, str, str]] = {
    # the demo shard run (docs/qa_quality.md, "Real runs through the product": 3 good + 3 weak of 18 as generated;
    # the docs name the good and the wrong ones; the other six the author labelled, matching the docs' counts)
    "098c767586a620c9c3647e7b5163e302:2": ("bad", "Devil's Dictionary satire (FLAG) read as fact: 'symbols in London similar to rubbish'", D),
    "2629e12da9996b633ddcd27206268856:0": ("good", "faithful to 'a strategy to avoid memory leaks ... called reference counting'", D),
    "2629e12da9996b633ddcd27206268856:1": ("bad", "system() takes one argument; the 'two' came from an unrelated shown sentence", D),
    "2629e12da9996b633ddcd27206268856:2": ("good", "the -s flag's own line: don't add the user site-packages directory", D),
    "2d0d802aca39ae932669e7653a522af1:0": ("good", "the manual's xmlexists sentence, verbatim", D),
    "2d0d802aca39ae932669e7653a522af1:2": ("bad", "EXTRACT's 'TIME and DATE types' rest on sentences about updates and UUIDs", D),
    "4bce3da0a95b94f62bc532ea4aafbf1c:1": ("bad", "the header_encode docstring pinned on __repr__, shown eight paragraphs away", D),
    "4bce3da0a95b94f62bc532ea4aafbf1c:2": ("weak", "the docstring's facts, verbatim, but they are not 'rules for parsing'", A),
    "5478efb0aa0ff348d5f6f22359d3fd5e:0": ("bad", "asks how transfer_funds2 ensures the failure the text warns about; quotes are about the first example", D),
    "5a9939044521d07bd56410ae358b9b52:0": ("weak", "the comment says so, but 'the outqueue' (of multiprocessing.pool) is never named", A),
    "87d04e631de59446945d4cd2ade52ed9:0": ("weak", "faithful to the release note, but the why-question is convoluted", A),
    "87d04e631de59446945d4cd2ade52ed9:1": ("bad", "negation flip: a slot could PREVENT cleanup of dead tuples; the answer says it leads to cleanup", D),
    "abbc97e37714d007c8254d90bb16a094:1": ("bad", "circular why: rupshift converts to upper case because it converts to upper case", A),
    "abbc97e37714d007c8254d90bb16a094:2": ("bad", "'the host variable ... mentioned': no subject, the answer a fragment of an error description", D),
    "bb03e38466d5a33b0a23b37bec397485:1": ("bad", "asks for steps; the answer restates the tip that one needs an application password", A),
    "c056f7bbc5c2ccbb370c804aa6af57ef:2": ("bad", "'3' comes from info.insert(3, ...) in another function", D),
    "caa590a7bde2c41f6468ea1427eb48f8:1": ("bad", "asks which algorithms 'when the format is gzip'; the answer is about compression levels", A),
    "caa590a7bde2c41f6468ea1427eb48f8:2": ("bad", "createuser's --superuser flag read as a default: two option lines glued", D),
    # the unseen corpus run (Opticks, Vim options.txt): every pair read in the docs
    "227080b6947eb98626f131389dafaea3:0": ("bad", "four questions in one; the 'reason' (refrangibility) belongs to another paragraph", D),
    "227080b6947eb98626f131389dafaea3:1": ("bad", "Sulphur, Nitre and Salt of Tartar make Pulvis fulminans, not Spirit of Nitre", D),
    "227080b6947eb98626f131389dafaea3:2": ("bad", "Newton walked 12 or 18 feet from the powder; there are no rings", D),
    "847b7dd674334b6adf8518b599652d4d:1": ("bad", "'updatecount' is set to zero BY starting with -n; swapfile is not zero without it", D),
    "847b7dd674334b6adf8518b599652d4d:2": ("weak", "true only with 'autochdir', which the question drops", D),
    "847b7dd674334b6adf8518b599652d4d:5": ("bad", "the answer stops mid-sentence ('encompasses:')", D),
    "847b7dd674334b6adf8518b599652d4d:8": ("bad", "the value 'compatible' sets, from a table of Vi defaults, not the default", D),
    "847b7dd674334b6adf8518b599652d4d:11": ("weak", "the 'commentstring' default, the option unnamed", D),
    "847b7dd674334b6adf8518b599652d4d:12": ("good", "both halves are the manual's cpo-s and cpo-S descriptions", D),
    "847b7dd674334b6adf8518b599652d4d:13": ("weak", "the default of Vim's 'sections' option, the option unnamed", D),
    # the focus-window demo run (docs/qa_quality.md, "A real-model run with focus": 2 good, 4 weak, 2 bad)
    "1e564c2ca26a011d5d2bd1cd730c7161:1": ("weak", "_force_close schedules _call_connection_lost; the completed sentence is from another class", D),
    "8a76ff3ea33d1d9c3959c89c9b6f89bf:1": ("weak", "correct contrast, but calls it 'the PostgreSQL EXECUTE statement' (it is PL/pgSQL's)", D),
    "98a6f077a14528fd50571ec883f9e1c7:0": ("good", "the pg_column_size table entry, faithfully", D),
    "9fad5e13d935c39f8df3d6745a726f7f:1": ("weak", "spam.error raised with PyErr_SetString, the example module unnamed", D),
    "ba7e7fe93913ece19384a74c4944e8f4:0": ("bad", "PQclear frees a result; it does not enable notifications", D),
    "ba7e7fe93913ece19384a74c4944e8f4:1": ("good", "the ECPG manual's Compatibility line", D),
    "dfd1353ef26453a3b64863b5ebfbc426:1": ("weak", "the init.d options listed without the manual's required/optional split", D),
    "e2d19c662fd12a1fa16200a0e5399c7f:0": ("bad", "two adjacent sentences glued into a cause: the password is not echoed, not 'encrypted'", D),
    # an earlier demo run (one pair per section, 6 pairs) that the docs do not read: labelled by the author
    "5f9366bc666d70dd70b9d0abc329f06e:0": ("bad", "the text never compares Capsules with reference counting", A),
    "891391e082e63c8c593e899b0c96147f:0": ("good", "'T ... was by the Greeks absurdly called tau': true, and said plainly", A),
    "ad6cd9c2144cd6a9998d58de9c40319a:0": ("weak", "the VAR line, but 'in a DECLARE section' misplaces it: the variable was declared there", A),
    "c7724b58bce8f121461fbe1d2687c3cb:0": ("bad", "quotes cut mid-sentence; the 'body-encode params list' contrast is invented", A),
    "ee7ef9dda800830e955b2c5fbee0db4f:0": ("weak", "asks for 'two files'; the answer says what each file lists (right, the question garbled)", A),
    "fc35cf366690bd0b78571b88f8cf2f0b:0": ("good", "the manual's note on BETWEEN and AND, verbatim", A),
}
# fmt: on


def split_of(pair_id: str) -> str:
    return "dev" if int(hashlib.sha256(pair_id.encode()).hexdigest()[:8], 16) % 5 < 2 else "test"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lineage", nargs="+", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rows, seen = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.lineage:
            copy = Path(tmp) / path.name
            shutil.copyfile(path, copy)
            store = LineageStore(copy)
            ids = [r[0] for r in store.query("SELECT pair_id FROM qa_pairs ORDER BY pair_id")]
            for item in load_pairs(store, ids):
                if item.prompt_id not in LABELS or item.prompt_id in seen:
                    continue
                seen.add(item.prompt_id)
                label, reason, by = LABELS[item.prompt_id]
                j = judge_input(item, CONTEXT_CHARS)
                rows.append(
                    dict(pair_id=j.pair_id, run=path.stem, section_id=item.section_id, title=j.title,
                         question=j.question, answer=j.answer, quotes=list(j.quotes), context=j.context, label=label,
                         reason=reason, labelled_by=by, split=split_of(j.pair_id))
                )  # fmt: skip
    missing = sorted(set(LABELS) - seen)
    if missing:
        raise SystemExit(f"labelled pairs not found in the lineage files: {missing}")
    with args.output.open("w", encoding="utf-8") as f:
        for row in sorted(rows, key=lambda r: (r["run"], r["pair_id"])):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} labelled pairs to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
