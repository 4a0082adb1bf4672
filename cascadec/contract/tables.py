"""Local table files, split slicing and nested column paths: what both the compiler (first-row checks) and the
runtime (loading) need to read a data source, in one place.

Formats (by keyword, the file extension, or for a folder the extension its files share): ``parquet``,
``arrow`` (Arrow IPC, stream or file; what ``datasets`` writes), ``csv``, ``json`` (one JSON array or JSON
Lines) and ``jsonl``. A folder holding several files reads them in name order; with a split name, only
files named for that split (the Hugging Face hub layout ``data/train-00000-of-00001.parquet`` or
``train.jsonl``) when any file is so named. A folder written by ``datasets.save_to_disk`` is read by
``datasets`` (its arrow files plus ``state.json``).

Splits follow ``datasets``' slicing syntax (https://huggingface.co/docs/datasets/loading#slice-splits):
``train``, ``train[:100]``, ``train[-100:]``, ``train[:-100]``, ``train[10%:20%]``; percentages round to
the closest row, as ``datasets`` does by default.

Nested column paths use dots: ``reward_model.ground_truth`` reads ``row["reward_model"]["ground_truth"]``;
a column whose own name holds a dot is found first.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

FORMATS = ("parquet", "arrow", "csv", "json", "jsonl")
_EXTENSIONS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
_SPLIT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")
MISSING = object()


class TableError(ValueError):
    """A table that cannot be read or a split that cannot be parsed; the message ends with a ``help:`` line."""


@dataclass(frozen=True)
class Split:
    """A parsed split: its name and the slice bounds as written (``"10%"``, ``"-100"`` or None)."""

    name: str
    start: str | None = None
    stop: str | None = None

    def bounds(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` row indices of the slice in a split of ``n`` rows."""
        return _index(self.start, n, 0), _index(self.stop, n, n)

    def apply(self, rows: list[Any]) -> list[Any]:
        start, stop = self.bounds(len(rows))
        return rows[start:stop]


def _index(bound: str | None, n: int, default: int) -> int:
    if bound is None:
        return default
    if bound.endswith("%"):
        # round half away from zero, the `closest` rounding of datasets.ReadInstruction
        value = int(bound[:-1]) * n / 100
        i = int(value + 0.5) if value >= 0 else -int(-value + 0.5)
    else:
        i = int(bound)
    i = i + n if i < 0 else i
    return max(0, min(n, i))


def parse_split(text: str) -> Split:
    """``"train[:-100]"`` -> ``Split("train", None, "-100")``.

    Raises:
        TableError: not of the form ``NAME`` or ``NAME[START:STOP]`` (``+`` unions are not supported).
    """
    m = _SPLIT.match(text.strip())
    if m is None:
        raise TableError(f"split `{text}` is not of the form `NAME` or `NAME[START:STOP]`\n"
                         'help: write e.g. split = "train", "train[:-100]", "train[:1000]" or "test[10%:20%]"')
    return Split(m["name"], m["start"], m["stop"])


def get_path(row: Mapping[str, Any], path: str, default: Any = MISSING) -> Any:
    """The value at dotted ``path`` in ``row`` (``default``, else ``MISSING``, when a step is absent)."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return default
    return value


def has_path(row: Mapping[str, Any], path: str) -> bool:
    return get_path(row, path) is not MISSING


def format_of(path: str, fmt: str | None = None) -> str:
    """The table format of ``path``: ``fmt`` when given, else by extension (a folder: its files' extension).

    Raises:
        TableError: unknown extension, or a folder with no table files.
    """
    if fmt is not None:
        return fmt
    if os.path.isdir(path):
        if is_saved_dataset(path):
            return "arrow"
        found = sorted({_EXTENSIONS[os.path.splitext(f)[1]] for f in _walk(path) if os.path.splitext(f)[1] in _EXTENSIONS})
        if len(found) == 1:
            return found[0]
        raise TableError(f"folder `{path}` holds " + ("no table files" if not found else
                         "files of several formats (" + ", ".join(found) + ")") +
                         "\nhelp: name the format, e.g. parquet(\"dir\"), or point at one file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXTENSIONS:
        raise TableError(f"cannot tell the format of `{path}` from its extension\n"
                         "help: use parquet(...), arrow(...), csv(...), json(...) or jsonl(...)")
    return _EXTENSIONS[ext]


def is_saved_dataset(path: str) -> bool:
    """A folder written by ``datasets`` ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(os.path.join(path, "dataset_dict.json"))


def _walk(folder: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
    return out


def files_of(path: str, fmt: str, split: str | None) -> list[str]:
    """The files a source reads: ``path`` itself, or the folder's files of ``fmt`` (only those of ``split``
    when any file is named for it, as in the hub layout ``train-00000-of-00001.parquet``)."""
    if not os.path.isdir(path):
        return [path]
    exts = {e for e, f in _EXTENSIONS.items() if f == fmt}
    files = [f for f in _walk(path) if os.path.splitext(f)[1] in exts]
    if split:
        named = [f for f in files if re.match(rf"{re.escape(split)}([-_.]|$)", os.path.basename(f))]
        files = named or files
    return files


def _read_file(path: str, fmt: str, limit: int | None) -> Iterator[dict[str, Any]]:
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=limit or 65536):
            yield from batch.to_pylist()
        return
    if fmt == "arrow":
        with pa.memory_map(path) as source:
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    yield from reader.get_batch(i).to_pylist()
                return
            for batch in reader:
                yield from batch.to_pylist()
        return
    if fmt == "csv":
        import pyarrow.csv as pcsv

        yield from pcsv.read_csv(path).to_pylist()
        return
    with open(path, encoding="utf-8") as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":
            yield from json.load(f)
            return
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise TableError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})\n"
                                     "help: each line must be one JSON object") from None


def _read_saved(path: str, split: str | None) -> list[dict[str, Any]]:
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        name = split or "train"
        if name not in ds:
            raise TableError(f"dataset `{path}` has no split `{name}` (splits: {', '.join(ds)})\n"
                             "help: name one of its splits, e.g. split = \"train\"")
        ds = ds[name]
    return list(ds)


def read_table(path: str, fmt: str | None = None, split: str | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a local file or folder, sliced by ``split``; with ``limit``, only the first ``limit`` rows of the
    split's files, unsliced (the compiler's first-row checks).

    Raises:
        TableError: a missing path, an unknown format, no files of the split, a row that is not an object,
            or a file the reader rejects (the message names the file).
    """
    if not os.path.exists(path):
        raise TableError(f"`{path}` does not exist\nhelp: fix the path (relative paths are resolved from the "
                         "spec's directory)")
    parsed = parse_split(split) if split else None
    fmt = format_of(path, fmt)
    if os.path.isdir(path) and is_saved_dataset(path):
        rows = _read_saved(path, parsed.name if parsed else None)
        return rows[:limit] if limit is not None else parsed.apply(rows) if parsed else rows
    files = files_of(path, fmt, parsed.name if parsed else None)
    if not files:
        raise TableError(f"folder `{path}` holds no {fmt} files\nhelp: point at a file or a folder of {fmt} files")
    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            for row in _read_file(file, fmt, limit):
                if not isinstance(row, dict):
                    raise TableError(f"{file}: row {len(rows) + 1} is not an object\n"
                                     "help: each row must be an object of columns")
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
        except TableError:
            raise
        except Exception as e:  # pyarrow and json raise many types; the message is what the user needs
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TableError(f"cannot read `{file}` as {fmt}: {first}\nhelp: check the file's format") from None
        if limit is not None and len(rows) >= limit:
            break
    return parsed.apply(rows) if parsed and limit is None else rows
