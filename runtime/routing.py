"""Routing rows by the value of a data field: to a reward (``route(field("data_source"), {...})``) or, in a
distill stage, to a teacher (``teachers by field("data_source") { ... }``).

A row's route key is the text of its field (``str(value)``; a dotted path reaches a nested column), and a
row whose key has no route takes the ``default`` route. Rows per route are counted in the metrics
(``route/<key>``; ``route/<unrouted>`` never appears, as a row without a route and no default is an error).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from cascadec.contract.plan import Origin
from cascadec.contract.tables import MISSING, get_path
from runtime.rewards.base import RewardError

DEFAULT = "default"


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


class RoutedReward:
    """Each row scored by the reward of its route, times the route's weight.

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

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        """Rewards of ``samples``; each route's reward is called once, on its rows, in batch order.

        Raises:
            RewardError: a row whose field value has no route, with no ``default`` route.
        """
        by_route: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            key = route_key(s, self.by)
            chosen = pick(key, self.routes)
            if chosen is None:
                raise RewardError(
                    f"sample `{s.id}` has `{self.by}` = {key!r}, which has no route and there is no `default` route",
                    hint="routes: " + ", ".join(f"`{k}`" for k in self.routes) +
                    "; add a route for it or a `default = ...` route", origin=self.origin)
            by_route.setdefault(chosen, []).append(i)
        out = [0.0] * len(samples)
        self.last_counts = Counter({k: len(v) for k, v in by_route.items()})
        for key, rows in by_route.items():
            values = self.routes[key]([samples[i] for i in rows], [completions[i] for i in rows])
            for i, v in zip(rows, values):
                out[i] = float(v) * self.weights[key]
        return out

    def metrics(self) -> dict[str, float]:
        """Rows per route of the last call, and the extras each route's reward logged (``<route>/<name>``)."""
        out = {f"route/{k}": float(n) for k, n in sorted(self.last_counts.items())}
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
