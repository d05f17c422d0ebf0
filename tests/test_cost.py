"""The cost model and the decision (harness.cost) and the deployment profile (harness.profile)."""

from __future__ import annotations

import pytest

from harness.cost import decide, flips, refresh_of, system_cost
from harness.errors import HarnessError
from harness.profile import Profile, parse_profile
from harness.records import RunResults, SystemResult


def _entry(acc, mean, p95, qps=None, training_s=None, index=None, retrieval=None, build=0.0, **kw):
    data = {
        "kind": "x",
        "metrics": {"accuracy": {"value": acc}},
        "latency_s": {"p50": mean, "p95": p95, "mean": mean},
        "build_cost_s": build,
        "peak_memory_mb": 1000.0,
    }
    if qps is not None:
        data["throughput"] = {
            "batch_size": 4,
            "questions_per_s": qps,
            "tokens_per_s": qps * 100,
            "tried": {"1": 1 / mean, "4": qps},
            "n": 8,
            "seconds": 3.0,
            "peak_memory_mb": 1200.0,
        }
    if training_s is not None:
        data["training"] = {"seconds": training_s}
    if index is not None:
        data["index"] = index
    if retrieval is not None:
        data["retrieval_latency_s"] = {"p50": retrieval, "p95": retrieval, "mean": retrieval}
    data.update(kw)
    return SystemResult.model_validate(data)


def _results(prompt_p: float, prompt_diff: float = -0.1) -> RunResults:
    """prompt, lora (most accurate) and rag. prompt vs lora at Holm-adjusted `prompt_p`; rag within noise."""
    systems = {
        "prompt": _entry(0.70, 0.2, 0.25, qps=10.0),  # 0.1 s a question, nothing to refresh
        "lora": _entry(0.80, 0.1, 0.12, qps=20.0, training_s=600.0, build=610.0),  # fast, retrains 10 min
        "rag": _entry(
            0.75, 0.5, 0.9, qps=4.0, retrieval=0.02, index={"built_s": 47.0, "n_docs": 47}, build=47.0
        ),  # slow, re-indexes one document in 1 s
    }

    def comp(a, b, diff, p):
        return {"a": a, "b": b, "metric": "accuracy", "diff": diff, "p_value": p, "test": "mcnemar-exact",
                "n": 100, "p_holm": p, "significant": p < 0.05}  # fmt: skip

    return RunResults(
        task="t",
        run_id="r",
        created="2026-01-01T00:00:00+00:00",
        answer_format="yes-no",
        headline_metric="accuracy",
        n_test=100,
        seed=0,
        systems=systems,
        comparisons=[
            comp("lora", "prompt", -prompt_diff, prompt_p),
            comp("lora", "rag", 0.05, 0.4),
            comp("prompt", "rag", -0.05, 0.6),
        ],
    )


def test_costs_come_from_the_measured_figures():
    r = _results(0.5)
    p = Profile(queries_per_day=100, updates_per_month=4, docs_per_update=2)
    rag = system_cost(r.systems["rag"], p)
    assert rag.s_per_1k_batch1 == pytest.approx(500.0)
    assert rag.s_per_1k_best == pytest.approx(1000 / 4 + 20.0)  # model throughput plus retrieval per question
    assert rag.best_batch_size == 4
    assert (rag.refresh_s, rag.refresh_basis) == (2.0, "measured")  # 1 s a document, 2 documents
    assert rag.machine_s_per_month == pytest.approx(100 * 30 * 0.27 + 4 * 2.0)
    assert rag.peak_memory_mb == 1200.0  # the probe's peak is larger than the evaluation's
    assert rag.usd_per_month is None
    lora = system_cost(r.systems["lora"], p.model_copy(update={"usd_per_hour": 3.6}))
    assert (lora.refresh_s, lora.refresh_what, lora.refresh_basis) == (600.0, "retrain the adapter", "measured")
    assert lora.usd_per_month == pytest.approx((100 * 30 * 0.05 + 4 * 600) / 1000)
    assert refresh_of(r.systems["prompt"]) == (0.0, "nothing to refresh", "none")
    # a probe slower at its best batch than the accuracy pass one at a time: serving uses the faster, batch 1
    slow = system_cost(_entry(0.7, 0.5, 0.6, qps=1.0), p)
    assert (slow.s_per_1k_best, slow.best_batch_size) == (500.0, 1)


def test_refresh_without_its_figure_is_estimated_from_the_build():
    e = _entry(0.8, 0.1, 0.1, training_s=None, build=300.0, training={"method": "lora"})
    assert refresh_of(e) == (300.0, "retrain the adapter", "estimated")
    both = _entry(0.8, 0.1, 0.1, training_s=200.0, index={"built_s": 10.0, "n_docs": 5}, build=210.0)
    assert refresh_of(both, 2) == (204.0, "re-index 2 changed documents and retrain the adapter", "measured")


@pytest.mark.parametrize(
    ("prompt_p", "profile", "answer"),
    [
        (0.5, {"queries_per_day": 100, "updates_per_month": 4}, "prompt"),  # few questions: no retraining cost
        (0.5, {"queries_per_day": 100_000, "updates_per_month": 1}, "lora"),  # volume pays for retraining
        (0.01, {"queries_per_day": 100, "updates_per_month": 30}, "rag"),  # prompt too weak; updates favour rag
    ],
)
def test_the_profile_makes_each_system_the_answer_in_turn(prompt_p, profile, answer):
    r = _results(prompt_p)
    costs, d = decide(r, Profile(**profile))
    assert d.recommended == answer
    assert d.most_accurate == "lora"
    assert d.text.count(f"choose {answer}.") == 1
    # it states the monthly cost of the choice and of the most accurate system
    assert f"{costs[answer].machine_s_per_month / 3600:.3g} machine-hours" in d.text
    assert f"{costs['lora'].machine_s_per_month / 3600:.3g} machine-hours" in d.text
    assert "set usd_per_hour" in d.text
    assert d.break_even, "a flip point along some axis"
    assert "becomes the cheaper choice" in d.text
    if prompt_p < 0.05:
        assert "prompt" not in d.eligible and "significantly below lora: prompt" in d.text


def test_break_even_is_where_the_lines_cross():
    r = _results(0.5)
    p = Profile(queries_per_day=100, updates_per_month=4)
    _, d = decide(r, p)
    q = next(b for b in d.break_even if b.axis == "queries_per_day")
    # prompt: 30*0.1*q ; lora: 30*0.05*q + 4*600  ->  q = 2400 / 1.5 = 1600
    assert (q.to, q.direction, q.at) == ("lora", "above", pytest.approx(1600.0))
    _, at_flip = decide(r, p.model_copy(update={"queries_per_day": 1601}))
    assert at_flip.recommended == "lora"


def test_latency_limit_and_money():
    r = _results(0.01)
    _, d = decide(r, Profile(queries_per_day=100, updates_per_month=30, p95_latency_s=0.5, usd_per_hour=2))
    assert d.recommended == "lora" and "rag" not in d.eligible
    assert "over the latency limit: rag" in d.text and "$" in d.text and "usd_per_hour" not in d.text
    _, none = decide(r, Profile(p95_latency_s=0.01))
    assert none.recommended is None and "no system qualifies" in none.text


def test_flips_picks_the_nearest_crossing_each_way():
    lines = {"a": (0.0, 2.0), "b": (10.0, 1.0), "c": (30.0, 0.5), "d": (-1.0, 3.0)}
    out = flips(lines, "a", 5.0, "queries_per_day")
    # b crosses a at 10 (c only at 20); d is cheaper than a below 1
    assert [(f.to, f.direction, f.at) for f in out] == [("b", "above", 10.0), ("d", "below", 1.0)]
    assert flips({"a": (0.0, 1.0)}, "a", 1.0, "updates_per_month") == []


def test_profile_option_parses_and_names_bad_keys_and_values():
    p = parse_profile("queries_per_day=5000, updates_per_month=4,usd_per_hour=0.9,p95_latency_s=2")
    assert (p.queries_per_day, p.updates_per_month, p.usd_per_hour, p.p95_latency_s) == (5000, 4, 0.9, 2)
    assert parse_profile("usd_per_hour=none", p).usd_per_hour is None
    with pytest.raises(HarnessError, match="unknown key 'queries_per_dya'; did you mean 'queries_per_day'"):
        parse_profile("queries_per_dya=5")
    with pytest.raises(HarnessError, match="queries_per_day=lots"):
        parse_profile("queries_per_day=lots")
    with pytest.raises(HarnessError, match="usd_per_hour=-1"):
        parse_profile("usd_per_hour=-1")
    with pytest.raises(HarnessError, match="not key=value"):
        parse_profile("5000")


def test_summary_md_and_the_terminal_carry_the_decision_paragraph(tmp_path):
    from harness.report.summary import markdown_text
    from harness.report.terminal import summary_text

    r = _results(0.5)
    _, d = decide(r, Profile(queries_per_day=100, updates_per_month=4))
    r = r.model_copy(update={"decision": d})
    assert "**Decision.** " + d.text.split(".")[0] in markdown_text(r)
    assert "choose prompt." in " ".join(summary_text(r, tmp_path, 100).split())
