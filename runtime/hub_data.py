"""``hf("org/name", subset = ..., split = ...)``: a Hugging Face hub dataset, read by ``datasets`` from the local
cache only.

Training machines often have no hub access, so the dataset is loaded in offline mode (``HF_HUB_OFFLINE``
semantics) whatever the environment says: a dataset that was never downloaded (or
prepared) into the cache is a ``DataError`` naming the cache folders, never a network retry loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from cascadec.contract.plan import DataSource


def cache_paths() -> tuple[str, str]:
    """(datasets' prepared-data cache, the hub file cache), honouring ``HF_HOME`` and friends."""
    import datasets.config
    from huggingface_hub import constants

    return str(datasets.config.HF_DATASETS_CACHE), str(constants.HF_HUB_CACHE)


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Offline mode for the duration of the block: ``datasets`` and ``huggingface_hub`` read their flags from
    the environment at import, so the imported flags are set (and restored, so other loads are unaffected)."""
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def load_hub_rows(source: DataSource, domain: str, error: type[Exception]) -> list[dict[str, Any]]:
    """Rows of ``source`` (kind ``hf``), split slice applied by ``datasets``.

    Raises:
        error (the caller's ``DataError``): ``datasets`` missing, or the dataset, subset or split not in the
            local cache; the message names both cache folders and how to fill them.
    """
    try:
        import datasets
    except ImportError:
        raise error(f"domain `{domain}` reads a Hugging Face dataset, but `datasets` is not installed\n"
                    "help: pip install datasets") from None
    split = source.split or "train"
    try:
        with _offline():
            ds = datasets.load_dataset(source.name, source.subset, split=split)
    except Exception as e:  # datasets raises many types for "not cached"; all mean the same to the user
        prepared, hub = cache_paths()
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        subset = f", subset `{source.subset}`" if source.subset else ""
        raise error(
            f"dataset `{source.name}`{subset}, split `{split}` of domain `{domain}` is not in the local cache "
            f"(looked in `{prepared}` and `{hub}`; offline mode): {first}\n"
            f"help: on a machine with hub access run `python -c \"import datasets; datasets.load_dataset("
            f"{source.name!r}{', ' + repr(source.subset) if source.subset else ''})\"` with the same HF_HOME, "
            "or download it to a folder and read it with parquet(\"dir\")"
        ) from None
    return list(ds)
