"""Routing rows by the value of a data field: to a reward (``route(field("data_source"), {...})``) or, in a
distill stage, to a teacher (``teachers by field("data_source") { ... }``).

A row's route key is the text of its field (``str(value)``; a dotted path reaches a nested column), and a
row whose key has no route takes the ``default`` route. Rows per route are counted in the metrics
(``route/<key>``). A row whose key has no route and no ``default`` (CAS324 finds these at compile time when the
data is local; hub data is only seen here) is *unrouted*: it gets no reward (NaN, which the GRPO step leaves
out of the loss and an eval leaves out of its score), is counted (``unrouted``), and the first one warns: a
silent zero reward would bias its group's advantages, and stopping a long run for a few stray rows of hub data
helps no one.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from cascadec.contract.plan import Origin
from cascadec.contract.tables import MISSING, get_path

DEFAULT = "default"
UNROUTED = "unrouted"


def route_key(sample: Any, field: str) -> str | None:
    """The text of ``sample``'s ``field`` (``answer``, ``prompt``, ``id`` or a column path), None when absent."""
    if field in ("answer", "prompt", "id"):
        value = getattr(sample, field)
    else:
        value = get_path(sample.meta, field)
    return None if value is MISSING or value is None else str(value)


def pick(key: str | None, routes: Mapping[str, Any]) -> str | None:
    """The route a key takes: its own, else ``default``, else None."""
    if key is not None and key in routes:
        return key
    return DEFAULT if DEFAULT in routes else None


def routes_by_field(spec: Any) -> bool:
    """Whether a ``RewardSpec`` routes rows by a field anywhere in it, so that NaN (an unrouted row) is a
    valid value of it."""
    return spec.kind == "route" or any(routes_by_field(p) for p in spec.parts)


def warn_unrouted(where: str, by: str, key: str | None, routes: Sequence[str]) -> None:
    """The one warning about rows without a route (the caller warns once per reward or stage)."""
    shown = "absent" if key is None else repr(key)
    warnings.warn(f"{where}: a row has `{by}` = {shown}, which has no route and there is no `default` route; "
                  f"such rows are left out and counted as `unrouted` in the metrics (routes: "
                  f"{', '.join(routes)}); add a route for it or a `default = ...` route", RuntimeWarning,
                  stacklevel=2)


def unrouted_metrics(samples: Sequence[Any], routes: Sequence[str | None]) -> dict[str, float]:
    """``unrouted/<domain>``: rows of each domain of ``samples`` whose route is None (every domain present)."""
    out = {f"unrouted/{d}": 0.0 for d in sorted({s.domain for s in samples})}
    for s, r in zip(samples, routes):
        if r is None:
            out[f"unrouted/{s.domain}"] += 1.0
    return out


class RoutedReward:
    """Each row scored by the reward of its route, times the route's weight; NaN for an unrouted row.

    Args:
        by: the field whose value picks the route.
        routes: route key (a field value, or ``default``) -> reward.
        weights: route key -> factor applied to that route's rewards (1 when absent).
    """

    def __init__(self, by: str, routes: Mapping[str, Any], weights: Mapping[str, float] | None = None, *,
                 origin: Origin | None = None) -> None:
        self.by, self.routes, self.origin = by, dict(routes), origin
        self.weights = {k: float((weights or {}).get(k, 1.0)) for k in routes}
        self.last_counts: Counter[str] = Counter()
        self.last_unrouted = 0
        self.warned = False

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        """Rewards of ``samples``; each route's reward is called once, on its rows, in batch order. A row whose
        field value has no route, with no ``default`` route, gets NaN (no reward), is counted in
        ``last_unrouted`` and warns (RuntimeWarning) the first time."""
        by_route: dict[str, list[int]] = {}
        out = [math.nan] * len(samples)
        self.last_unrouted = 0
        for i, s in enumerate(samples):
            key = route_key(s, self.by)
            chosen = pick(key, self.routes)
            if chosen is None:
                self.last_unrouted += 1
                if not self.warned:
                    self.warned = True
                    where = f"{self.origin.path}:{self.origin.line}" if self.origin else "reward `route`"
                    warn_unrouted(where, self.by, key, list(self.routes))
                continue
            by_route.setdefault(chosen, []).append(i)
        self.last_counts = Counter({k: len(v) for k, v in by_route.items()})
        for key, rows in by_route.items():
            values = self.routes[key]([samples[i] for i in rows], [completions[i] for i in rows])
            for i, v in zip(rows, values):
                out[i] = float(v) * self.weights[key]
        return out

    def metrics(self) -> dict[str, float]:
        """Rows per route of the last call (``route/<key>``), rows without one (``unrouted``), and the extras
        each route's reward logged (``<route>/<name>``)."""
        out = {f"route/{k}": float(n) for k, n in sorted(self.last_counts.items())}
        out[UNROUTED] = float(self.last_unrouted)
        for key, reward in self.routes.items():
            if key in self.last_counts:
                out.update({f"{key}/{name}": v for name, v in reward_metrics(reward).items()})
        return out


def reward_metrics(reward: Any) -> dict[str, float]:
    """What a reward logged on its last call: routed rewards' counts, and the mean of each extra value a
    user function returned (``runtime.rewards.adapters``); {} for other rewards."""
    inner = getattr(reward, "reward", None)
    if inner is not None and not hasattr(reward, "metrics"):
        return reward_metrics(inner)
    if hasattr(reward, "metrics"):
        return reward.metrics()
    extras: dict[str, list[float]] = getattr(reward, "last_extras", {}) or {}
    out = {}
    for name, values in sorted(extras.items()):
        seen = [v for v in values if v == v]
        if seen:
            out[name] = sum(seen) / len(seen)
    return out
