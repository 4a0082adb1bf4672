"""Prompt data: a plan ``DataSource`` -> ``list[Sample]``, and the deterministic domain-mixture sampler.

Sources (``cascadec.contract.plan.DataSource``): ``jsonl`` (one JSON object per line, columns mapped by ``fields``),
``gym`` (a reasoning-gym generator), ``hf_disk`` (``datasets.load_from_disk``), ``hf`` (a hub dataset from
the local cache, ``runtime.hub_data``), ``parquet``/``arrow``/``csv``/``json`` files and folders
(``cascadec.contract.tables``), ``inline`` (rows in the spec). Rows become Samples by ``runtime.rows``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cascadec.contract.errors import UserError
from cascadec.contract.plan import DataSource
from cascadec.contract.tables import TableError, parse_split, read_table
from runtime.hub_data import load_hub_rows
from runtime.rows import RowError, Sample, row_to_sample

__all__ = ["DataError", "MixtureSampler", "Sample", "load_domains", "load_source"]


class DataError(UserError):
    """Bad data: a missing file, a malformed row, an unknown generator. The message has the location."""


_TABLES = ("parquet", "arrow", "csv", "json")


def load_source(source: DataSource, *, domain: str, split: str = "train") -> list[Sample]:
    """Load every row of ``source`` as Samples of ``domain``; ``split`` names the rows in ids.

    Raises DataError (with file:line for jsonl rows) for missing files, malformed rows, missing
    prompt columns, unknown reasoning-gym generators, a split that cannot be parsed, a hub dataset not in
    the local cache and a missing ``datasets`` package.
    """
    try:
        if source.kind == "gym":
            samples = _load_gym(source, domain, split)
        elif source.kind == "inline":
            samples = _samples(source.rows, source, domain, split, lambda i: f"inline row {i + 1} of domain `{domain}`")
        else:
            samples = _load_rows(source, domain, split)
    except (RowError, TableError) as e:
        raise DataError(str(e)) from None
    if source.size is not None and source.kind != "gym":
        samples = samples[: source.size]
    if not samples:
        raise DataError(f"data of domain `{domain}` ({split}) is empty\nhelp: give it at least one row")
    return samples


def _samples(rows: list[Any], source: DataSource, domain: str, split: str,
             where: Callable[[int], str]) -> list[Sample]:
    return [row_to_sample(row, source.fields, domain, split, i, where=where(i)) for i, row in enumerate(rows)]


def _load_rows(source: DataSource, domain: str, split: str) -> list[Sample]:
    if source.kind == "jsonl":
        samples = _load_jsonl(source, domain, split)
        return parse_split(source.split).apply(samples) if source.split else samples
    if source.kind == "hf_disk":
        return _load_hf_disk(source, domain, split)
    if source.kind == "hf":
        rows = load_hub_rows(source, domain, DataError)
        return _samples(rows, source, domain, split, lambda i: f"`{source.name}` row {i}")
    if source.kind in _TABLES:
        rows = read_table(source.path or "", source.kind, source.split)
        return _samples(rows, source, domain, split, lambda i: f"`{source.path}` row {i}")
    raise DataError(f"unknown data source kind `{source.kind}`")


def _load_jsonl(source: DataSource, domain: str, split: str) -> list[Sample]:
    if not source.path:
        raise DataError(f"jsonl data of domain `{domain}` has no path")
    path = Path(source.path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"data file `{path}` of domain `{domain}` does not exist\n"
            "help: fix the path in the spec (relative paths are resolved from the spec's directory)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read data file `{path}` of domain `{domain}`: {e}") from None
    samples = []
    # Only "\n" ends a JSON Lines record: str.splitlines() would also split inside strings that hold a raw
    # U+2028, U+2029 or U+0085, which JSON allows.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{where}: malformed JSON ({e.msg} at column {e.colno})\nhelp: each line must be one JSON object"
            ) from None
        samples.append(row_to_sample(row, source.fields, domain, split, lineno - 1, where=where))
    return samples


def _load_gym(source: DataSource, domain: str, split: str) -> list[Sample]:
    import reasoning_gym

    if not source.name:
        raise DataError(f"gym data of domain `{domain}` has no generator name")
    try:
        dataset = reasoning_gym.create_dataset(source.name, size=source.size or 100, seed=source.seed, **source.args)
    except Exception as e:
        raise DataError(
            f"reasoning-gym cannot create `{source.name}` for domain `{domain}`: {_first_line(e)}\n"
            "help: check the generator name and its arguments (see reasoning_gym.factory.DATASETS)"
        ) from None
    samples = []
    for i, entry in enumerate(dataset):
        # The entry travels in meta so the gym reward can call the generator's own scorer on it.
        samples.append(
            Sample(
                id=f"{domain}/{split}/{i}",
                domain=domain,
                prompt=entry["question"],
                answer=entry["answer"],
                meta={"gym": source.name, "entry": entry, "metadata": entry.get("metadata", {})},
            )
        )
    return samples


def _load_hf_disk(source: DataSource, domain: str, split: str) -> list[Sample]:
    try:
        import datasets  # noqa: F401  (only to report a missing package before anything else)
    except ImportError:
        raise DataError(
            f"domain `{domain}` reads a Hugging Face dataset from disk, but `datasets` is not installed\n"
            "help: pip install datasets"
        ) from None
    if not source.path or not Path(source.path).exists():
        raise DataError(f"dataset directory `{source.path}` of domain `{domain}` does not exist\n"
                        "help: fix the path in the spec (a directory written by `datasets.save_to_disk`; relative "
                        "paths are resolved from the spec's directory)")
    try:
        rows = read_table(source.path, "arrow", source.split)
    except TableError:
        raise
    except Exception as e:
        raise DataError(f"cannot load dataset `{source.path}` of domain `{domain}`: {_first_line(e)}") from None
    return _samples(rows, source, domain, split, lambda i: f"{source.path} row {i}")


class MixtureSampler:
    """Deterministic batches from a weighted mixture of domains.

    ``batch(step)`` depends only on ``(seed, step)`` and the data, so a resumed run sees the batches it
    would have seen without the crash. Each step gives every domain ``floor(w * batch_size)`` samples and
    hands the remaining slots out at random in proportion to the fractional parts, so the long-run mixture
    equals the weights with low per-step variance. Inside a domain, samples are drawn without replacement
    from a per-epoch permutation (epoch = the domain's cursor // its size), so every sample is seen once
    per epoch. ``order`` maps a domain to its source's ``(shuffle, seed)``: without shuffling an epoch reads
    the rows in order; a source seed other than 0 changes the permutation.
    """

    def __init__(self, data: Mapping[str, list[Sample]], weights: Mapping[str, float], batch_size: int, seed: int,
                 order: Mapping[str, tuple[bool, int]] | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.domains = sorted(d for d, w in weights.items() if w > 0)
        if not self.domains:
            raise ValueError("the mixture has no domain with a positive weight")
        missing = [d for d in self.domains if not data.get(d)]
        if missing:
            raise ValueError(f"no data for domain(s) {missing}")
        total = sum(weights[d] for d in self.domains)
        self.weights = {d: weights[d] / total for d in self.domains}
        self.data = {d: data[d] for d in self.domains}
        self.batch_size = batch_size
        self.seed = seed
        self.order = dict(order or {})
        self._cursor: list[dict[str, int]] = [dict.fromkeys(self.domains, 0)]
        self._orders: dict[tuple[str, int], list[int]] = {}

    def counts(self, step: int) -> dict[str, int]:
        """How many samples each domain contributes at ``step`` (sums to ``batch_size``)."""
        rng = random.Random(f"mixture:{self.seed}:{step}")
        exact = {d: self.weights[d] * self.batch_size for d in self.domains}
        counts = {d: int(exact[d]) for d in self.domains}
        frac = {d: exact[d] - counts[d] for d in self.domains}
        for _ in range(self.batch_size - sum(counts.values())):
            pool = [d for d in self.domains if frac[d] > 0] or self.domains
            d = rng.choices(pool, weights=[frac[d] or 1.0 for d in pool])[0]
            counts[d] += 1
            frac[d] = 0.0
        return counts

    def _cursor_at(self, step: int) -> dict[str, int]:
        while len(self._cursor) <= step:
            s = len(self._cursor) - 1
            c = self.counts(s)
            self._cursor.append({d: self._cursor[s][d] + c[d] for d in self.domains})
        return self._cursor[step]

    def _draw(self, domain: str, position: int) -> Sample:
        pool = self.data[domain]
        epoch, offset = divmod(position, len(pool))
        key = (domain, epoch)
        if key not in self._orders:
            order = list(range(len(pool)))
            shuffle, source_seed = self.order.get(domain, (True, 0))
            if shuffle:
                salt = f":{source_seed}" if source_seed else ""
                random.Random(f"epoch:{self.seed}:{domain}:{epoch}{salt}").shuffle(order)
            # Cursors only move forward, so older epochs of this domain are never needed again.
            self._orders = {k: v for k, v in self._orders.items() if k[0] != domain or k[1] > epoch}
            self._orders[key] = order
        return pool[self._orders[key][offset]]

    def batch(self, step: int) -> list[Sample]:
        """The ``batch_size`` samples of ``step``, grouped by domain in sorted domain order."""
        start = self._cursor_at(step)
        counts = self.counts(step)
        return [self._draw(d, start[d] + i) for d in self.domains for i in range(counts[d])]


def load_domains(sources: Iterable[tuple[str, DataSource]], split: str = "train") -> dict[str, list[Sample]]:
    """Load several domains' sources: ``[(domain, source), ...]`` -> ``{domain: samples}``."""
    return {name: load_source(src, domain=name, split=split) for name, src in sources}


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
