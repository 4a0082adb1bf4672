"""The study's report: read each seed's run directory, analyse it with ``study_stats``, and write the Markdown
page, the arms' curves and one cascade chart per seed (see ``bench/study.py`` for the driver).

Sections of the page:

1. each eval's score after each stage, mean ± std across seeds;
2. per seed: whether stage B was learnable (its GRPO reward at its first and last step) and how far it dropped
   domain A below its teacher (beyond eval noise or not), and the steps each arm took to bring A back to 95%
   of the teacher's score;
3. per seed: both arms' final scores on every eval;
4. both arms' eval curves (one PNG, every seed thin, the mean thick) and each seed's cascade chart;
5. MOPD minus GRPO, paired by seed, with a t interval and a bootstrap interval, and a plain verdict that
   names a winner only where the interval excludes 0.

Seeds whose two arms have not both finished (per ``state.json``) are listed and left out of the analysis.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.study_stats import (BASE, CONFIDENCE, RECOVERY, ArmResult, Spread, StudyError, analyse_run, arm_curve,
                               last_scores, paired_difference, regression_is_real, spread, stage_table,
                               steps_cell, steps_summary, verdict)
from runtime.state import atomic_write_bytes, atomic_write_text, read_jsonl


@dataclass(frozen=True)
class Run:
    """One seed's run directory: its plan (as JSON), its eval records, the stages ``state.json`` marks done
    (None without a ``state.json``), and each stage's mean reward at its first and last logged step."""

    path: Path
    plan: dict
    evals: list[dict]
    done: frozenset[str] | None
    rewards: dict[str, tuple[float, float]]


def load_run(path: Path) -> Run:
    """Read ``plan.json``, ``evals.jsonl``, ``state.json`` and ``stages/*/metrics.jsonl`` of a run directory.
    Raises StudyError when ``plan.json`` or ``evals.jsonl`` is missing."""
    plan, evals, state = path / "plan.json", path / "evals.jsonl", path / "state.json"
    for f in (plan, evals):
        if not f.is_file():
            raise StudyError(f"`{path}` has no {f.name}\nhelp: pass a run directory written by `cascadec run`")
    done = None
    if state.is_file():
        stages = json.loads(state.read_text()).get("stages", {})
        done = frozenset(name for name, s in stages.items() if s.get("status") == "done")
    return Run(path, json.loads(plan.read_text()), read_jsonl(evals), done, _stage_rewards(path))


def _stage_rewards(path: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for metrics in sorted(path.glob("stages/*/metrics.jsonl")):
        rewards = [float(r["reward_mean"]) for r in read_jsonl(metrics) if "reward_mean" in r]
        if rewards:
            out[metrics.parent.name] = (rewards[0], rewards[-1])
    return out


def finished(run: Run, arms: Sequence[str]) -> bool:
    """Whether both arms have finished: done in ``state.json``, or (without one) have eval records."""
    if run.done is not None:
        return all(arm in run.done for arm in arms)
    return all(any(r["stage"] == arm for r in run.evals) for arm in arms)


def stage_order(plan: dict) -> list[str]:
    """``base`` then the plan's stages in topological order."""
    return [BASE, *(s["name"] for s in plan["stages"])]


def plan_stage(plan: dict, name: str) -> dict:
    for stage in plan["stages"]:
        if stage["name"] == name:
            return stage
    raise StudyError(f"the plan `{plan['name']}` has no stage `{name}`\n"
                     f"help: name the arms with --mopd/--grpo; stages: {', '.join(stage_order(plan)[1:])}")


def teacher_candidates(plan: dict, mopd: str, domain: str) -> list[str]:
    """The stages the MOPD stage may take ``domain``'s teacher from: one fixed stage, or the candidates of
    ``best(...)``; the domain's own route first, else ``default``. Raises StudyError without a route."""
    routes = plan_stage(plan, mopd).get("teachers", {})
    ref = routes.get(domain) or routes.get("default")
    if ref is None:
        raise StudyError(f"stage `{mopd}` has no teacher for `{domain}`\nhelp: pass --domain-a with a routed domain")
    return [ref["stage"]] if ref["kind"] == "stage" else list(ref["candidates"])


# ------------------------------------------------------------------ figures


def plot_curves(runs: Sequence[Run], *, arms: Sequence[str], parent: str, keys: Sequence[str],
                targets: dict[str, float], path: Path) -> None:
    """One panel per eval key: each arm's per-seed curves (thin) and their mean (thick); domain A's panel
    also shows the 95%-of-teacher target (mean over seeds). Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    colours = dict(zip(arms, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for ax, key in zip(axes[0], keys):
        for arm in arms:
            curves = [arm_curve(run.evals, arm, parent, key) for run in runs]
            for curve in curves:
                ax.plot(*zip(*curve), color=colours[arm], alpha=0.3, linewidth=1)
            common = sorted(set.intersection(*(set(dict(c)) for c in curves)))
            if common:
                ax.plot(common, [statistics.fmean(dict(c)[s] for c in curves) for s in common],
                        color=colours[arm], linewidth=2.5, marker="o", markersize=3,
                        label=f"{arm} (mean of {len(curves)})")
        if key in targets:
            ax.axhline(targets[key], color="grey", linestyle="--", label=f"{RECOVERY:.0%} of teacher")
        ax.set_title(key)
        ax.set_xlabel(f"steps after `{parent}`")
        ax.set_ylabel("eval score")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_cascade_charts(runs: Sequence[Run], out: Path) -> dict[Path, str]:
    """Each run's cascade chart (``runtime.report``: every eval's score after every stage) as
    ``<out stem>-<run dir name>-cascade.png`` next to ``out``; returns run path -> file name."""
    from runtime.report_charts import cascade_chart
    from runtime.report import load_run as load_summary

    names = {}
    for run in runs:
        name = f"{out.stem}-{run.path.name}-cascade.png"
        atomic_write_bytes(out.with_name(name), cascade_chart(load_summary(run.path)))
        names[run.path] = name
    return names


# ------------------------------------------------------------------ Markdown


@dataclass(frozen=True)
class Layout:
    """What the page is about: the two arms (MOPD first), the stage both start from, domain A's eval key and
    its teacher candidates."""

    arms: tuple[str, str]
    parent: str
    key_a: str
    candidates: tuple[str, ...]


def render_markdown(runs: Sequence[Run], done: Sequence[Run], results: Sequence[ArmResult], lay: Layout, *,
                    images: dict[str, str], charts: dict[Path, str], title: str, note: str, command: str) -> str:
    """The report's Markdown text (see the module docstring for its sections). ``done``: the runs whose arms
    finished, in the order of ``results``; ``images``: figure -> file name."""
    plan = runs[0].plan
    lines = [f"# {title}", ""] + ([note, ""] if note else []) + [
        f"Spec `{plan['name']}`, {len(runs)} seed(s): " + ", ".join(f"`{r.path}`" for r in runs) + ".",
        f"Written by `{command}`.", ""]
    finished_paths = {r.path for r in done}
    waiting = [r for r in runs if r.path not in finished_paths]
    if waiting:
        lines += ["**Not finished** (left out below the stage table): " + ", ".join(
            f"`{r.path}` (done: {', '.join(sorted(r.done or [])) or 'nothing'})" for r in waiting) + ".", ""]
    lines += _stage_section(runs)
    lines += _seed_section(done, results, lay)
    lines += _final_section(results, lay)
    lines += [f"## Curves of the two arms (both start from `{lay.parent}`)", "", f"![curves]({images['curves']})", "",
              "## Cascade chart of each seed", ""]
    lines += [f"`{path}`\n\n![cascade {path.name}]({name})\n" for path, name in charts.items()]
    lines += _comparison_section(results, lay)
    return "\n".join(lines)


def _stage_section(runs: Sequence[Run]) -> list[str]:
    table = stage_table([last_scores(r.evals) for r in runs], stage_order(runs[0].plan))
    keys = sorted({k for row in table.values() for k in row})
    items = {f"{r['domain']}.{r['eval']}": int(r.get("n", 0)) for run in runs for r in run.evals}
    lines = ["## Score after each stage (mean ± std across seeds)", "",
             "| stage | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {stage} | " + " | ".join(_cell(row.get(k), len(runs)) for k in keys) + " |"
              for stage, row in table.items()]
    sizes = ", ".join(f"`{k}` {items[k]} items (one item = {1 / items[k]:.3f})" for k in keys if items.get(k))
    return lines + ["", ("Each cell is the stage's last eval point (its final checkpoint), over every seed unless "
                         f"marked `(n=k)` (a run that lacks the stage). Eval sets: {sizes}; a pass@1 score p on n "
                         "items has a binomial standard error of sqrt(p(1-p)/n)."), ""]


def _seed_section(done: Sequence[Run], results: Sequence[ArmResult], lay: Layout) -> list[str]:
    mopd, grpo = lay.arms
    lines = [f"## Per seed: stage B, the drop of `{lay.key_a}`, and steps back to {RECOVERY:.0%} of its teacher", "",
             (f"B reward: `{lay.parent}`'s mean rollout reward at its first → last step (non-zero at the first "
              f"step = learnable from the start). Teacher: the best last score on `{lay.key_a}` among "
              f"{', '.join(f'`{c}`' for c in lay.candidates)} (the MOPD stage's teacher for domain A); start: "
              f"`{lay.parent}`'s score, where both arms begin. Steps are counted at eval points."), "",
             f"| seed run | B reward | teacher | start | drop | target | {mopd} | {grpo} |", "|---|" + "---:|" * 7]
    for run, r in zip(done, results):
        first_last = run.rewards.get(lay.parent)
        b = f"{first_last[0]:.3f} → {first_last[1]:.3f}" if first_last else "-"
        drop = f"{r.teacher - r.start:+.3f}" + ("" if regression_is_real(r.teacher, r.start, r.items) else " (noise)")
        lines.append(f"| `{r.seed_run}` | {b} | {r.teacher:.3f} | {r.start:.3f} | {drop} | {r.target:.3f} | "
                     f"{steps_cell(r.steps[mopd], r.budget[mopd])} | {steps_cell(r.steps[grpo], r.budget[grpo])} |")
    real = sum(regression_is_real(r.teacher, r.start, r.items) for r in results)
    return lines + ["", f"- `{mopd}`: {steps_summary(results, mopd)}", f"- `{grpo}`: {steps_summary(results, grpo)}",
                    (f"- stage B lowered `{lay.key_a}` beyond {CONFIDENCE:.0%} eval noise (two-score binomial "
                     f"standard error) in {real} of {len(results)} seeds; a drop marked (noise) did not."), ""]


def _final_section(results: Sequence[ArmResult], lay: Layout) -> list[str]:
    keys = sorted({k for r in results for arm in lay.arms for k in r.final[arm]})
    cols = [(arm, k) for k in keys for arm in lay.arms]
    lines = ["## Per seed: final scores of both arms", "",
             "| seed run | " + " | ".join(f"`{k}` {arm}" for arm, k in cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| `{r.seed_run}` | " + " | ".join(_score(r.final[arm].get(k)) for arm, k in cols) + " |"
              for r in results]
    return lines + [""]


def _comparison_section(results: Sequence[ArmResult], lay: Layout) -> list[str]:
    mopd, grpo = lay.arms
    key_a = lay.key_a
    lines = ["## MOPD vs continued GRPO (paired by seed)", "",
             "| measure | MOPD | GRPO | MOPD − GRPO | t interval | bootstrap |", "|---|---:|---:|---:|---:|---:|"]
    keys = sorted({k for r in results for arm in lay.arms for k in r.final[arm]})
    steps_what = f"steps to {RECOVERY:.0%} of the teacher's `{key_a}` (not reached = next eval point after the budget)"
    comparisons = [(steps_what, [float(r.censored_steps(mopd)) for r in results],
                    [float(r.censored_steps(grpo)) for r in results]),
                   (f"mean `{key_a}` over the arm (area under the curve)",
                    [r.area[mopd] for r in results], [r.area[grpo] for r in results])]
    comparisons += [(f"last `{key}`", [r.final[mopd].get(key, math.nan) for r in results],
                     [r.final[grpo].get(key, math.nan) for r in results]) for key in keys]
    paired = []
    for what, a, b in comparisons:
        p = paired_difference(a, b)
        paired.append(p)
        lines.append(f"| {what} | {spread(a)} | {spread(b)} | {p.mean:+.3f} | {_interval(p.t_interval)} | "
                     f"{_interval(p.bootstrap)} |")
    verdicts = [verdict(paired[0], what=f"steps to bring `{key_a}` back to {RECOVERY:.0%} of its teacher",
                        higher_is_better=False)]
    faster = sum(1 for r in results if r.censored_steps(mopd) < r.censored_steps(grpo))
    slower = sum(1 for r in results if r.censored_steps(mopd) > r.censored_steps(grpo))
    verdicts.append(f"MOPD got there sooner in {faster} of {len(results)} seeds, later in {slower}, at the same "
                    f"eval point in {len(results) - faster - slower}.")
    censored = sum(r.steps[arm] is None for r in results for arm in lay.arms)
    if censored:
        verdicts.append(f"{censored} arm-seed(s) never got there; each counts as the next eval point after its "
                        "budget, a lower bound that pulls the difference towards 0.")
    verdicts.append(verdict(paired[1], what=f"the mean `{key_a}` over the arm's steps"))
    real = sum(regression_is_real(r.teacher, r.start, r.items) for r in results)
    if real < len(results):
        verdicts.append(f"Caveat: stage B hurt domain A beyond eval noise in only {real} of {len(results)} seeds; "
                        "where it did not, there was nothing to recover and the arms' difference on domain A "
                        "measures drift, not recovery.")
    return lines + ["", "**Verdict.** " + " ".join(verdicts), ""]


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(iv: tuple[float, float] | None) -> str:
    return f"[{iv[0]:+.3f}, {iv[1]:+.3f}]" if iv else "-"


def _cell(value: Spread | None, runs: int) -> str:
    if value is None:
        return "-"
    return str(value) if value.n == runs else f"{value} (n={value.n})"


# ------------------------------------------------------------------ the whole report


def layout(plan: dict, mopd: str, grpo: str, domain_a: str) -> Layout:
    """Check the plan has both arms, with one common parent, a teacher for ``domain_a`` and an eval on it.
    Raises StudyError otherwise."""
    parents = {plan_stage(plan, mopd)["parent"], plan_stage(plan, grpo)["parent"]}
    if len(parents) != 1:
        raise StudyError(f"the arms `{mopd}` and `{grpo}` start from different stages ({', '.join(sorted(parents))})"
                         "\nhelp: both arms must be children of the same stage")
    evals = [e["name"] for e in plan["domains"].get(domain_a, {}).get("evals", [])]
    if not evals:
        raise StudyError(f"domain `{domain_a}` has no eval in plan `{plan['name']}`\nhelp: pass --domain-a")
    return Layout((mopd, grpo), parents.pop(), f"{domain_a}.{evals[0]}",
                  tuple(teacher_candidates(plan, mopd, domain_a)))


def report(run_dirs: Sequence[Path], out: Path, *, mopd: str, grpo: str, domain_a: str, title: str,
           note: str, command: str) -> str:
    """Analyse ``run_dirs`` and write ``out`` (Markdown), ``<out stem>-curves.png`` and one
    ``<out stem>-<run>-cascade.png`` per run; returns the text. Raises StudyError when no run has finished
    both arms."""
    runs = [load_run(Path(d)) for d in run_dirs]
    if not runs:
        raise StudyError("no run directories\nhelp: pass --from-runs DIR... or a spec to run")
    lay = layout(runs[0].plan, mopd, grpo, domain_a)
    done = [r for r in runs if finished(r, lay.arms)]
    if not done:
        raise StudyError(f"no run has finished both `{mopd}` and `{grpo}`\n"
                         "help: run the study again (it resumes), then write the report")
    results = [analyse_run(r.evals, arms=lay.arms, parent=lay.parent, key_a=lay.key_a, candidates=lay.candidates,
                           name=str(r.path)) for r in done]
    keys = sorted({k for r in results for arm in lay.arms for k in r.final[arm]})
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name(out.stem + "-curves.png")
    plot_curves(done, arms=lay.arms, parent=lay.parent, keys=keys,
                targets={lay.key_a: statistics.fmean(r.target for r in results)}, path=png)
    charts = write_cascade_charts(runs, out)
    text = render_markdown(runs, done, results, lay, images={"curves": png.name}, charts=charts, title=title,
                           note=note, command=command)
    atomic_write_text(out, text)
    return text
