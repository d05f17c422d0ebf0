"""The cost model and the decision: pure functions over a run's records.

Each system's cost comes from what the run measured (records.SystemCost):
- build: the artifact's recorded build time (training and/or indexing);
- serving: seconds per 1,000 questions one at a time (mean latency at batch 1) and at the best batch size
  the throughput probe measured (plus the measured retrieval time per question, which is not batched);
- refresh after a document update: re-index the changed documents (the index's recorded build time per
  document), retrain the adapter (its recorded training time), or both; `refresh_basis` says whether that is
  measured or, where the record lacks the figure, estimated from the whole build time.

`decide` turns them into machine-hours (and money, with `usd_per_hour`) per month for a deployment profile
and picks the cheapest system whose headline metric is not significantly below the most accurate one
(Holm-adjusted paired test, `Comparison.p_holm`) and that meets the latency limit, with the query volume and
update rate at which that choice flips.
"""

from __future__ import annotations

from harness.constants import SIGNIFICANCE_LEVEL
from harness.profile import Profile, defaults_used
from harness.records import BreakEven, Decision, RunResults, SystemCost, SystemResult

DAYS_PER_MONTH = 30


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def refresh_of(entry: SystemResult, docs_per_update: int = 1) -> tuple[float, str, str]:
    """(seconds, what, basis) to refresh `entry` after one update of `docs_per_update` documents."""
    seconds, what, measured = 0.0, [], True
    index = entry.index or {}
    if entry.index is not None:
        built, n_docs = _num(index.get("built_s")), _num(index.get("n_docs"))
        if built is not None and n_docs:
            seconds += built / n_docs * min(docs_per_update, n_docs)
        else:  # no per-document figure: the whole build, the most a re-index can take
            seconds, measured = seconds + (_num(entry.build_cost_s) or 0.0), False
        what.append(f"re-index {docs_per_update} changed document{'s' * (docs_per_update != 1)}")
    if entry.training is not None:
        trained = _num(entry.training.get("seconds"))
        if trained is None:
            trained, measured = _num(entry.build_cost_s) or 0.0, False
        seconds += trained
        what.append("retrain the adapter")
    if not what:
        return 0.0, "nothing to refresh", "none"
    return round(seconds, 2), " and ".join(what), "measured" if measured else "estimated"


def serving(entry: SystemResult) -> tuple[float | None, int | None]:
    """(seconds per question, batch size) of the cheapest measured way to serve: the throughput probe's best
    batch size (retrieval added per question), or one question at a time as the timed latency sample measured it
    (its mean, over latency_s.n questions), whichever took less (on a busy machine the probe's batch-1 figure
    can be the slower one)."""
    batch1 = entry.latency_s.mean if entry.latency_s is not None else None
    tp = entry.throughput
    if tp is None or tp.questions_per_s <= 0:
        return batch1, None if batch1 is None else 1
    retrieval = entry.retrieval_latency_s.mean if entry.retrieval_latency_s is not None else 0.0
    best = 1.0 / tp.questions_per_s + retrieval
    if batch1 is not None and batch1 < best:
        return batch1, 1
    return best, tp.batch_size


def seconds_per_question(entry: SystemResult) -> float | None:
    return serving(entry)[0]


def scenario_refresh(results: RunResults, name: str, docs_per_update: int) -> float | None:
    """The refresh a `--scenario updates` run measured for `name` (None without one): a retrain mode's last
    refresh (a new adapter on everything known), otherwise the mean seconds per absorbed document of stages 1 ...
    (rag's index add, a continued adapter's training on the new wave), times `docs_per_update`."""
    sc = results.scenario
    if sc is None or len(sc.stages) < 2 or any(name not in st.systems for st in sc.stages):
        return None
    later = [(st.systems[name].refresh_s, len(sc.waves[st.stage].doc_ids)) for st in sc.stages[1:]]
    if any(_num(s) is None for s, _ in later):
        return None
    if name.endswith("-retrain"):
        return round(later[-1][0], 2)
    return round(sum(s for s, _ in later) / sum(d for _, d in later) * docs_per_update, 2)


def system_cost(entry: SystemResult, profile: Profile, measured: float | None = None) -> SystemCost:
    """What `entry` costs, at `profile`; `measured`: the refresh a scenario measured (scenario_refresh)."""
    refresh, what, basis = refresh_of(entry, profile.docs_per_update)
    if measured is not None and what != "nothing to refresh":
        what = (
            what.replace("retrain the adapter", "train the adapter further")
            if (entry.training or {}).get("continued_from")
            else what
        )
        refresh, what, basis = measured, f"{what} (as measured in the documents-change scenario)", "measured"
    per_q = seconds_per_question(entry)
    monthly = None
    if per_q is not None:
        monthly = profile.queries_per_day * DAYS_PER_MONTH * per_q + profile.updates_per_month * refresh
    batch1 = entry.latency_s.mean * 1000 if entry.latency_s is not None else None
    tp = entry.throughput
    peaks = [p for p in (entry.peak_memory_mb, tp.peak_memory_mb if tp else None) if p is not None]
    return SystemCost(
        build_s=entry.build_cost_s,
        s_per_1k_batch1=None if batch1 is None else round(batch1, 2),
        s_per_1k_best=None if tp is None or per_q is None else round(per_q * 1000, 2),
        best_batch_size=serving(entry)[1] if tp is not None else None,
        refresh_s=refresh,
        refresh_what=what,
        refresh_basis=basis,
        peak_memory_mb=max(peaks) if peaks else None,
        machine_s_per_month=None if monthly is None else round(monthly, 2),
        usd_per_month=None
        if monthly is None or profile.usd_per_hour is None
        else round(monthly / 3600 * profile.usd_per_hour, 4),
        p95_latency_s=entry.latency_s.p95 if entry.latency_s is not None else None,
    )


def line(cost: SystemCost, axis: str, profile: Profile) -> tuple[float, float]:
    """(intercept, slope) of the system's monthly machine-seconds as a function of one profile axis."""
    per_q = cost.s_per_1k_best if cost.s_per_1k_best is not None else cost.s_per_1k_batch1
    serve = DAYS_PER_MONTH * (per_q or 0.0) / 1000  # machine-seconds per month per (question a day)
    if axis == "queries_per_day":
        return profile.updates_per_month * cost.refresh_s, serve
    return profile.queries_per_day * serve, cost.refresh_s


def flips(lines: dict[str, tuple[float, float]], chosen: str, x0: float, axis: str) -> list[BreakEven]:
    """The nearest values above and below `x0` at which another system of `lines` becomes cheaper than
    `chosen` (costs are straight lines a + b*x, so each crossing is exact)."""
    a0, b0 = lines[chosen]
    up, down = None, None
    for name, (a, b) in lines.items():
        if name == chosen or b == b0:
            continue
        x = (a - a0) / (b0 - b)
        if b < b0 and x > x0 and (up is None or x < up[0]):
            up = (x, name)
        if b > b0 and 0 <= x < x0 and (down is None or x > down[0]):
            down = (x, name)
    out = []
    if up is not None:
        out.append(BreakEven(axis=axis, at=round(up[0], 3), to=up[1], direction="above"))
    if down is not None:
        out.append(BreakEven(axis=axis, at=round(down[0], 3), to=down[1], direction="below"))
    return out


def _headline(entry: SystemResult, metric: str) -> float | None:
    m = entry.metrics.get(metric)
    return _num(m.value) if m is not None else None


def _p_holm(results: RunResults, x: str, y: str, metric: str):
    """(p_holm, x - y) of the recorded paired comparison of x and y on `metric`, or (None, None)."""
    for c in results.comparisons:
        if c.metric == metric and {c.a, c.b} == {x, y}:
            return c.p_holm, (c.diff if c.a == x else -c.diff)
    return None, None


def decide(results: RunResults, profile: Profile) -> tuple[dict[str, SystemCost], Decision]:
    """Every ok system's cost at `profile`, and the decision (see the module docstring)."""
    metric = results.headline_metric
    ok = {n: e for n, e in results.systems.items() if e.ok and _headline(e, metric) is not None}
    costs = {n: system_cost(e, profile, scenario_refresh(results, n, profile.docs_per_update)) for n, e in ok.items()}
    decision = {"profile": profile, "defaults": defaults_used(profile), "break_even": []}
    if not ok:
        text = f"No system produced a figure for {metric}, so there is no system to recommend."
        return costs, Decision(**decision, recommended=None, most_accurate=None, eligible=[], text=text)

    def p95(n):
        return costs[n].p95_latency_s

    best = max(ok, key=lambda n: (_headline(ok[n], metric), -(p95(n) or float("inf"))))
    below, slow, eligible = [], [], []
    for n in ok:
        if n != best:
            p, diff = _p_holm(results, n, best, metric)
            if p is None or (p < SIGNIFICANCE_LEVEL and diff < 0):
                below.append(n)  # no recorded test claims nothing, so it cannot clear the bar either
                continue
        if profile.p95_latency_s is not None and (p95(n) is None or p95(n) > profile.p95_latency_s):
            slow.append(n)
            continue
        if costs[n].machine_s_per_month is not None:
            eligible.append(n)
    chosen = None
    if eligible:
        chosen = min(eligible, key=lambda n: (costs[n].machine_s_per_month, -_headline(ok[n], metric)))
        for axis in ("queries_per_day", "updates_per_month"):
            lines = {n: line(costs[n], axis, profile) for n in eligible}
            decision["break_even"] += flips(lines, chosen, getattr(profile, axis), axis)
    decision.update(recommended=chosen, most_accurate=best, eligible=eligible)
    text = paragraph(results, profile, costs, Decision(**decision, text=""), below, slow)
    return costs, Decision(**decision, text=text)


def with_decision(results: RunResults, profile: Profile) -> RunResults:
    """`results` with each system's cost and the decision for `profile`."""
    costs, decision = decide(results, profile)
    systems = {n: e.model_copy(update={"cost": costs.get(n)}) for n, e in results.systems.items()}
    return results.model_copy(update={"systems": systems, "decision": decision})


# ---------------------------------------------------------------- the paragraph


def number(v: float) -> str:
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"


def money(seconds: float | None, profile: Profile) -> str:
    """Machine-seconds as machine-hours, and USD when the profile prices them."""
    if seconds is None:
        return "an unknown amount"
    hours = seconds / 3600
    text = f"{hours:.3g} machine-hours" if hours < 1000 else f"{hours:,.0f} machine-hours"
    if profile.usd_per_hour is not None:
        text += f" (${hours * profile.usd_per_hour:,.2f})"
    return text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "an unrecorded time"
    if seconds < 10:  # two significant digits: a half-second retrain is "0.49 s", not "0 s"
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def profile_text(profile: Profile) -> str:
    parts = [
        f"{number(profile.queries_per_day)} questions a day",
        f"{number(profile.updates_per_month)} document update{'s' * (profile.updates_per_month != 1)} a month "
        f"({profile.docs_per_update} document{'s' * (profile.docs_per_update != 1)} each)",
    ]
    if profile.p95_latency_s is not None:
        parts.append(f"a p95 latency limit of {number(profile.p95_latency_s)} s")
    return ", ".join(parts)


def _axis_text(b: BreakEven) -> str:
    unit = "questions a day" if b.axis == "queries_per_day" else "document updates a month"
    return f"{b.to} becomes the cheaper choice {b.direction} {number(b.at)} {unit}"


def paragraph(
    results: RunResults, profile: Profile, costs: dict[str, SystemCost], d: Decision, below: list, slow: list
) -> str:
    m, best = results.headline_metric, d.most_accurate
    defaults = ", ".join(k for k in d.defaults if getattr(profile, k) is not None)
    head = f"For {profile_text(profile)}"
    head += f" (defaults: {defaults}; set `decision:` in the task file or --profile)" if defaults else ""
    out = []

    def fig(n):
        return f"{results.systems[n].metrics[m].value:.3f}"

    if d.recommended is None:
        why = []
        if below:
            why.append(f"{', '.join(below)} {'is' if len(below) == 1 else 'are'} significantly below {best} on {m}")
        if slow:
            why.append(f"{', '.join(slow)} exceed{'s' * (len(slow) == 1)} the latency limit")
        out.append(f"{head}, no system qualifies: {'; '.join(why) or 'no system has a serving cost'}.")
        return " ".join(out)
    rec = d.recommended
    out.append(f"{head}, choose {rec}.")
    if rec == best:
        out.append(f"It has the highest {m} ({fig(rec)})")
    else:
        p, _ = _p_holm(results, rec, best, m)
        out.append(
            f"Its {m} ({fig(rec)}) is not significantly below the most accurate system, {best} "
            f"({fig(best)}; Holm-adjusted p = {p:.3g})"
        )
    if profile.p95_latency_s is not None:
        out[-1] += f", it meets the latency limit (p95 {costs[rec].p95_latency_s:.2f} s)"
    c = costs[rec]
    out[-1] += f", and it costs {money(c.machine_s_per_month, profile)} a month"
    if rec != best:
        out[-1] += f" against {money(costs[best].machine_s_per_month, profile)} for {best}"
    out[-1] += "."
    out.append(
        f"That is serving at {number(c.s_per_1k_best or c.s_per_1k_batch1)} s per 1,000 questions"
        + (f" (batch {c.best_batch_size})" if c.best_batch_size else "")
        + (f" plus {duration(c.refresh_s)} per update to {c.refresh_what} ({c.refresh_basis})" if c.refresh_s else "")
        + (f"; building it once takes {duration(c.build_s)}" if c.build_s else "")
        + "."
    )
    if profile.usd_per_hour is None:
        out.append("Money needs your machine's price: set usd_per_hour.")
    excluded = []
    if below:
        excluded.append(f"significantly below {best}: {', '.join(below)}")
    if slow:
        excluded.append(f"over the latency limit: {', '.join(slow)}")
    if excluded:
        out.append(f"Not considered ({'; '.join(excluded)}).")
    if d.break_even:
        out.append("What would change the answer: " + "; ".join(_axis_text(b) for b in d.break_even) + ".")
    elif len(d.eligible) > 1:
        out.append("No query volume or update rate changes this choice among the systems that qualify.")
    else:
        out.append("It is the only system that qualifies, whatever the query volume or update rate.")
    return " ".join(out)
