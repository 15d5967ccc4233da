"""Shared pieces of the RULER generators: the token-counter protocol, sample records, seeded RNGs,
and the length-fitting engine (RULER's binary search + per-sample decrement, done on token estimates
from per-unit counts and confirmed by one exact count of each final prompt)."""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable


@runtime_checkable
class TokenCounter(Protocol):
    """Anything that counts tokens exactly (e.g. ``lc_assets.lib.tokenizer.TextTokenizer``)."""

    def count(self, text: str) -> int: ...

    def count_batch(self, texts: Sequence[str]) -> list[int]: ...


class RulerLengthError(ValueError):
    """The task cannot fit into ``max_seq_length`` even with its smallest haystack."""


def derive_rng(seed: int, *parts: object) -> random.Random:
    """An independent ``random.Random`` for (seed, parts...), e.g. (seed, task, length, sample index).

    RULER seeds the global RNG once per process, so a sample depends on every draw made before it
    (search probes, earlier samples, the tokenizer). Deriving one RNG per sample makes sample i
    depend only on (seed, task, length, i, starting unit count), whatever order samples are built in.
    """
    digest = hashlib.sha256(repr((seed, *parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


@dataclass
class RulerSample:
    """One RULER sample.

    ``length`` is the exact token count of the final prompt (``input + answer_prefix``);
    RULER's own ``length`` field also adds ``tokens_to_generate`` — see ``length_with_generation``
    and ``to_ruler_record``. ``num_units`` is the haystack size used (words, lines, distinct words, docs).
    """

    index: int
    task: str
    max_seq_length: int
    input: str
    answer_prefix: str
    outputs: list[str]
    length: int
    tokens_to_generate: int
    num_units: int
    #: niah only: depth (percent of the haystack) of each needle, in needle order
    needle_depths: list[float] | None = None
    #: niah only: character offset of each needle in ``input``
    needle_char_positions: list[int] | None = None
    #: niah only: token offset of each needle in the prompt, estimated from per-unit counts (+-few tokens)
    needle_token_positions: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The exact string RULER sends to the model: input + answer prefix (model wrapper included)."""
        return self.input + self.answer_prefix

    @property
    def length_with_generation(self) -> int:
        """RULER's stored ``length``: prompt tokens + tokens_to_generate (<= max_seq_length)."""
        return self.length + self.tokens_to_generate

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) of all fields."""
        return asdict(self)

    def to_ruler_record(self) -> dict[str, Any]:
        """The record in RULER's jsonl field names (``length`` includes the generation budget)."""
        record = {
            "index": self.index,
            "input": self.input,
            "outputs": list(self.outputs),
            "length": self.length_with_generation,
            "length_w_model_temp": self.length_with_generation,
            "answer_prefix": self.answer_prefix,
        }
        if self.needle_token_positions:
            record["token_position_answer"] = self.needle_token_positions[0]
        return record


@dataclass
class TaskBuild:
    """The result of building one task at one length: samples, or a structured "not run" with a reason."""

    task: str
    max_seq_length: int
    status: str  # "ok" | "not_run"
    samples: list[RulerSample] = field(default_factory=list)
    reason: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def not_run(cls, task: str, max_seq_length: int, reason: str) -> TaskBuild:
        return cls(task=task, max_seq_length=max_seq_length, status="not_run", reason=reason)


class CountCache:
    """Memoised exact counts of small strings (words, needles, headers), plus a counter of full-prompt counts."""

    def __init__(self, tokenizer: TokenCounter) -> None:
        self.tokenizer = tokenizer
        self._memo: dict[str, int] = {}
        self.prompt_counts = 0
        self.prompt_chars = 0

    def counts(self, texts: Sequence[str]) -> list[int]:
        """Exact counts, each distinct string tokenized once per cache."""
        memo = self._memo
        missing = list({t for t in texts if t not in memo})
        if missing:
            memo.update(zip(missing, self.tokenizer.count_batch(missing), strict=True))
        return [memo[t] for t in texts]

    def count(self, text: str) -> int:
        return self.counts([text])[0]

    def count_prompts(self, texts: Sequence[str]) -> list[int]:
        """Exact counts of full prompts (not memoised; these are the costly calls)."""
        self.prompt_counts += len(texts)
        self.prompt_chars += sum(len(t) for t in texts)
        return self.tokenizer.count_batch(list(texts)) if texts else []


def unit_cost(cache: CountCache, unit: str, sep: str) -> float:
    """Average tokens one more repeated unit adds (with its separator), measured on a short run."""
    one = cache.count(unit)
    many = cache.count(sep.join([unit] * 33))
    return (many - one) / 32


@dataclass
class Rendered:
    """A formatted prompt for one (material, unit count) plus its gold answers and extra fields."""

    text: str
    outputs: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


M = TypeVar("M")


class UnitGenerator(ABC, Generic[M]):
    """A task generator whose haystack is a number of units that the fitting engine chooses.

    ``draw`` makes a sample's random material for up to ``max_units`` units; ``estimate`` gives the
    token count of the prompt with ``n`` of those units from cached per-unit counts (no tokenizing);
    ``render`` builds the prompt deterministically from (material, n).
    """

    family: str
    budget: int  # max prompt tokens
    inc: int  # RULER's decrement step
    margin: float = 8.0  # how far an estimate may be off before we confirm the next-larger count exactly

    def _set_budget(self, max_seq_length: int, tokens_to_generate: int, cache: CountCache) -> None:
        """RULER's budget rule: the prompt plus the task's generation tokens fit max_seq_length."""
        self.max_seq_length = max_seq_length
        self.budget = max_seq_length - tokens_to_generate
        self.cache = cache

    @abstractmethod
    def upper_bound(self, rng: random.Random) -> int:
        """RULER's search upper bound (e.g. 3x the units a probe of ``inc`` units suggests)."""

    @abstractmethod
    def draw(self, rng: random.Random, max_units: int, index: int = 0) -> M:
        """Random material of sample ``index`` (qa: the question number) for up to ``max_units`` units."""

    @abstractmethod
    def estimate(self, material: M, n: int) -> float: ...

    @abstractmethod
    def render(self, material: M, n: int) -> Rendered: ...

    def search_start(self, cache: CountCache, rng: random.Random) -> tuple[int, dict[str, Any]]:
        """RULER's binary search for the largest unit count whose probe sample fits, on estimates.

        One probe sample is drawn for the whole search (RULER draws a fresh one per step); its estimate
        is corrected by one exact count of the chosen prompt until that count fits.
        """
        upper = max(self.upper_bound(rng), 2 * self.inc)
        probe = self.draw(rng, upper)
        bias = 0.0
        exact_checks = 0
        best = self.inc
        for _ in range(8):
            lo, hi, best_found = self.inc, upper, None
            while lo <= hi:
                mid = (lo + hi) // 2
                if self.estimate(probe, mid) + bias <= self.budget:
                    best_found, lo = mid, mid + 1
                else:
                    hi = mid - 1
            best = best_found if best_found is not None else self.inc
            exact = cache.count_prompts([self.render(probe, best).text])[0]
            exact_checks += 1
            new_bias = exact - self.estimate(probe, best)
            if exact <= self.budget or best == self.inc:
                bias = new_bias
                break
            # the estimate was low: correct it (at least one token more each round) and search again
            bias = max(new_bias, bias + 1)
        return best, {"search_upper": upper, "search_exact_counts": exact_checks, "estimate_bias": bias}


@dataclass
class _SampleState(Generic[M]):
    index: int
    material: M
    n: int
    known: dict[int, int] = field(default_factory=dict)
    best: tuple[int, Rendered, int] | None = None
    rendered: Rendered | None = None


def candidates_below(start: int, inc: int) -> Iterator[int]:
    """RULER's per-sample sizes: start, start-inc, ... while positive."""
    n = start
    while n > 0:
        yield n
        n -= inc


def fit_samples(
    gen: UnitGenerator[M],
    cache: CountCache,
    start: int,
    indices: Iterable[int],
    sample_rng: Any,
    bias: float = 0.0,
    batch_size: int = 16,
) -> Iterator[tuple[int, int, Rendered, int]]:
    """Per sample: the largest of start, start-inc, ... whose prompt fits the budget (RULER's rule).

    Yields (index, units, rendered, exact prompt tokens). Candidates are chosen on estimates; each
    final prompt is counted exactly once, and again only when the estimate was wrong near the
    budget (then the neighbouring candidate is counted too, so the result equals RULER's rule).
    """
    errors: list[float] = []
    index_list = list(indices)
    for b in range(0, len(index_list), batch_size):
        states: list[_SampleState[M]] = []
        for i in index_list[b : b + batch_size]:
            material = gen.draw(sample_rng(i), start, index=i)
            n = start
            for cand in candidates_below(start, gen.inc):
                n = cand
                if gen.estimate(material, cand) + bias <= gen.budget:
                    break
            states.append(_SampleState(index=i, material=material, n=n))
        pending = states
        while pending:
            for s in pending:
                s.rendered = gen.render(s.material, s.n)
            exacts = cache.count_prompts([s.rendered.text for s in pending])  # type: ignore[union-attr]
            still: list[_SampleState[M]] = []
            for s, exact in zip(pending, exacts, strict=True):
                est = gen.estimate(s.material, s.n)
                errors.append(exact - est)
                s.known[s.n] = exact
                if exact > gen.budget:
                    if s.best is not None:  # a smaller candidate is already known to fit
                        continue
                    if s.n - gen.inc <= 0:
                        raise RulerLengthError(
                            f"{gen.family}: even {s.n} units give {exact} prompt tokens > budget {gen.budget}"
                        )
                    s.n -= gen.inc
                    still.append(s)
                    continue
                s.best = (s.n, s.rendered, exact)  # type: ignore[arg-type]
                up = s.n + gen.inc
                if up <= start and up not in s.known:
                    if gen.estimate(s.material, up) + (exact - est) <= gen.budget + gen.margin:
                        s.n = up  # the estimate may have skipped a fitting candidate: confirm exactly
                        still.append(s)
            pending = still
            if errors:
                bias = sorted(errors)[len(errors) // 2]
        for s in states:
            assert s.best is not None
            n, rendered, exact = s.best
            yield s.index, n, rendered, exact
