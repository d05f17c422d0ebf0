"""The results layer against hand-computed values: baselines (and their tie rule), the test of each system
against the strongest baseline (paired by question id, Holm-adjusted over the run's systems), the exact chance
test, and the prior-breaking subset with answer bias (issue 15)."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from harness import baselines, priorbreak, run, stats
from harness.data import Question
from harness.records import RunResults, Sample, SystemResult
from harness.report.prior import markdown_lines, prior_section, terminal_lines
from harness.report.recommend import recommendation
from harness.report.summary import markdown_text, summary_rows


def yn(i: str, gold: str, cat: str | None = None) -> Question:
    return Question(id=i, question=f"{i}?", answers=[gold], choices=["Yes", "No"], category=cat)


def mc(i: str, pos: int, cat: str | None = None, k: int = 4) -> Question:
    choices = [f"{i}-{c}" for c in "abcdefgh"[:k]]
    return Question(id=i, question=f"{i}?", answers=[choices[pos]], choices=choices, category=cat)


def sample(system: str, q: Question, prediction: str, margin: float | None = None) -> Sample:
    right = float(prediction == q.answers[0])
    return Sample(
        system=system,
        id=q.id,
        question=q.question,
        gold=q.answers[0],
        golds=q.answers,
        prediction=prediction,
        correct=right,
        latency_s=0.1,
        category=q.category,
        margin=margin,
        prompt_tokens=10,
        scores={"accuracy": right},
    )


def scored(base: dict, test: list[Question], fmt: str) -> dict[str, baselines.Baseline]:
    return baselines.baseline_results(base, test, fmt, n_boot=200, seed=0)


# ---------------------------------------------------------------- baselines and the tie rule


def test_category_prior_breaks_a_tie_by_the_order_of_the_options_not_by_insertion():
    for a_answers in (["No", "Yes", "No", "Yes"], ["Yes", "No", "Yes", "No"]):
        train = [yn(f"a{i}", g, "a") for i, g in enumerate(a_answers)]
        train += [yn("b0", "No", "b"), yn("b1", "No", "b"), yn("b2", "Yes", "b")]
        test = [yn("t1", "Yes", "a"), yn("t2", "Yes", "b"), yn("t3", "Yes", "c")]
        base = baselines.baselines(train, test, "yes-no")
        # a: 2 Yes / 2 No -> Yes (first of the options); b: 2 No / 1 Yes -> No; unseen c -> overall (3 Y / 4 N: No)
        assert base["category_prior"]["predictions"] == {"t1": "Yes", "t2": "No", "t3": "No"}
        assert base["majority"]["predictions"] == {"t1": "No", "t2": "No", "t3": "No"}
        out = scored(base, test, "yes-no")
        assert out["category_prior"].result.accuracy == pytest.approx(1 / 3)
        assert out["category_prior"].per_question == {"t1": 1.0, "t2": 0.0, "t3": 0.0}
        assert out["majority"].result.accuracy == 0.0


def test_most_common_ties_go_to_the_order_then_to_the_smallest_key():
    assert baselines.most_common({"No": 2, "Yes": 2}, ["Yes", "No"]) == "Yes"
    assert baselines.most_common({"zebra": 1, "apple": 1}) == "apple"
    assert baselines.most_common({3: 2, 1: 2, 0: 1}) == 1
    free = baselines.baselines(
        [Question("x", "?", ["b"]), Question("y", "?", ["a"])], [Question("t", "?", ["a"])], "free-text"
    )
    assert free["majority"]["predictions"] == {"t": "a"}


def _mc_split():
    # gold positions: x [0,0,0,1,2], y [1,1,1,0,3]; overall 0: 4, 1: 4 (a tie: option 1), 2: 1, 3: 1
    train = [mc(f"x{i}", p, "x") for i, p in enumerate([0, 0, 0, 1, 2])]
    train += [mc(f"y{i}", p, "y") for i, p in enumerate([1, 1, 1, 0, 3])]
    test = [mc("t1", 0, "x"), mc("t2", 2, "x"), mc("t3", 1, "y"), mc("t4", 3, "y"), mc("t5", 1, "z")]
    return train, test


def test_multiple_choice_baselines_by_position_by_hand():
    train, test = _mc_split()
    base = baselines.baselines(train, test, "multiple-choice")
    assert list(base) == [
        "majority_position",
        "category_majority_position",
        "category_position_prior",
        "uniform_random",
    ]
    assert base["majority_position"]["predictions"]["t3"] == "t3-a"  # option 1 wins the 4/4 tie
    assert "option 1, 40% of training questions" in base["majority_position"]["description"]
    assert base["category_majority_position"]["predictions"] == {
        "t1": "t1-a", "t2": "t2-a", "t3": "t3-b", "t4": "t4-b", "t5": "t5-a"
    }  # fmt: skip
    # guessing with the category's shares: t1 3/5, t2 1/5, t3 3/5, t4 1/5, t5 (unseen: overall) 4/10
    assert base["category_position_prior"]["chances"] == pytest.approx(
        {"t1": 0.6, "t2": 0.2, "t3": 0.6, "t4": 0.2, "t5": 0.4}
    )
    out = scored(base, test, "multiple-choice")
    values = {n: b.result.accuracy for n, b in out.items()}
    assert values == pytest.approx(
        {
            "majority_position": 0.2,
            "category_majority_position": 0.4,
            "category_position_prior": 0.4,
            "uniform_random": 0.25,
        }
    )
    assert out["uniform_random"].per_question is None and out["uniform_random"].chances["t1"] == 0.25
    # 0.4 each: the one that answers each question is the strongest (a paired test is possible)
    assert baselines.strongest(out, "accuracy") == "category_majority_position"


def test_a_question_with_fewer_options_gets_the_most_common_position_it_has():
    train = [mc(f"q{i}", 3) for i in range(3)] + [mc("q9", 1)]
    test = [mc("t", 1, k=2)]
    assert baselines.baselines(train, test, "multiple-choice")["majority_position"]["predictions"] == {"t": "t-b"}


# ---------------------------------------------------------------- the test against the strongest baseline


def test_vs_best_baseline_pairs_by_question_id_not_list_position():
    test = [yn(f"q{i}", "Yes") for i in range(10)]
    base = {"majority": baselines.Baseline(_result(0.5), per_question={f"q{i}": float(i < 5) for i in range(10)})}
    # the system is right on q0..q6; its samples come in reverse order
    samples = [sample("s", q, "Yes" if int(q.id[1:]) < 7 else "No") for q in reversed(test)]
    t = baselines.vs_best_baseline(samples, base, "accuracy", seed=0)
    # by id: 2 discordant pairs, both for the system -> exact McNemar p = binomtest(0, 2) = 0.5
    # (paired by position, the reversed list would give 3 vs 5 discordant pairs: p = 0.727)
    assert (t.n, t.diff, t.p_value, t.test) == (10, pytest.approx(0.2), pytest.approx(0.5), "mcnemar-exact")
    assert t.p_holm == t.p_value and not t.significant and not t.beats


def _result(value: float):
    from harness.records import BaselineResult, Interval

    return BaselineResult(accuracy=value, metrics={"accuracy": Interval(value=value)}, description="d")


def test_four_systems_significant_raw_but_not_after_holm(tmp_path):
    """Each system beats the baseline at raw p = 0.031 (6 discordant pairs, all its way); over four systems
    Holm gives 0.125: no system "beats" it, in results.json, the summary, summary.md and the recommendation."""
    test = [yn(f"q{i:02d}", "Yes") for i in range(20)]
    base = {
        "majority": baselines.Baseline(_result(0.5), per_question={q.id: float(i < 10) for i, q in enumerate(test)})
    }
    runs = {}
    for name in ("prompt", "fewshot", "lora", "rag"):
        samples = [sample(name, q, "Yes" if i < 16 else "No") for i, q in enumerate(test)]
        vb = baselines.vs_best_baseline(samples, base, "accuracy", seed=0)
        assert vb.p_value == pytest.approx(2 * 0.5**6) and vb.significant  # alone, it would be significant
        runs[name] = run.SystemRun(SystemResult(kind="prompt", metrics=_metrics(0.8), vs_best_baseline=vb), samples)
    runs = run.holm_vs_baseline(runs)
    for r in runs.values():
        vb = r.result.vs_best_baseline
        assert vb.p_value < 0.05 < vb.p_holm == pytest.approx(0.125)
        assert not vb.significant and not vb.beats
    results = RunResults(
        task="t",
        run_id="r",
        created="2026-11-29T10:00:00+00:00",
        answer_format="yes-no",
        headline_metric="accuracy",
        n_test=20,
        seed=0,
        systems={n: r.result for n, r in runs.items()},
        baselines={"majority": base["majority"].result},
    )
    assert {r.beats for r in summary_rows(results) if not r.is_baseline} == {"not different"}
    md = markdown_text(results)
    assert md.count("not different (Holm p = 0.125)") == 4 and "Verdicts follow Holm-adjusted p-values" in md
    assert "is not better than the strongest model-free baseline, majority" in recommendation(results)
    assert "beats" not in recommendation(results)


def _metrics(v: float):
    from harness.records import Interval

    return {"accuracy": Interval(value=v, ci_low=v - 0.1, ci_high=v + 0.1)}


def test_skewed_gold_position_and_a_system_that_always_picks_it_is_not_better_than_majority_position():
    train = [mc(f"r{i}", 0 if i < 6 else i % 3 + 1) for i in range(10)]  # 60% option 1
    test = [mc(f"t{i}", 0 if i < 6 else 2) for i in range(10)]
    out = scored(baselines.baselines(train, test, "multiple-choice"), test, "multiple-choice")
    assert out["majority_position"].result.accuracy == 0.6 and out["uniform_random"].result.accuracy == 0.25
    samples = [sample("prompt", q, q.choices[0]) for q in test]
    vb = baselines.vs_best_baseline(samples, out, "accuracy", seed=0)
    assert vb.baseline == "majority_position" and vb.diff == 0.0 and vb.p_value == 1.0
    tests = baselines.holm_over_systems({"prompt": vb})
    results = RunResults(
        task="mc",
        run_id="r",
        created="2026-11-29T10:00:00+00:00",
        answer_format="multiple-choice",
        headline_metric="accuracy",
        n_test=10,
        seed=0,
        systems={"prompt": SystemResult(kind="prompt", metrics=_metrics(0.6), vs_best_baseline=tests["prompt"])},
        baselines={n: b.result for n, b in out.items()},
    )
    text = recommendation(results)
    assert "prompt is not better than the strongest model-free baseline, majority_position" in text
    assert summary_rows(results)[0].beats == "not different"


def test_against_a_guessing_baseline_the_test_is_exact_binomial():
    train = [mc(f"r{i}", 0) for i in range(5)]
    test = [mc(f"t{i}", 1) for i in range(20)]  # the training majority position never holds on test
    out = scored(baselines.baselines(train, test, "multiple-choice"), test, "multiple-choice")
    assert out["majority_position"].result.accuracy == 0.0
    samples = [sample("s", q, q.choices[1] if i < 7 else q.choices[2]) for i, q in enumerate(test)]
    vb = baselines.vs_best_baseline(samples, out, "accuracy", seed=0)
    assert vb.baseline == "uniform_random" and vb.test == "binomial-exact" and vb.n == 20
    assert vb.diff == pytest.approx(0.35 - 0.25)
    assert vb.p_value == pytest.approx(binomtest(7, 20, 0.25).pvalue)


def test_chance_test_by_hand():
    # P(0) = 0.5 * 0.75 = 0.375, P(1) = 0.5 * 0.75 + 0.5 * 0.25 = 0.5, P(2) = 0.125: both right -> p = 0.125
    res = stats.chance_test([1, 1], [0.5, 0.25])
    assert res["p_value"] == pytest.approx(0.125) and res["test"] == "poisson-binomial-exact"
    assert res["diff"] == pytest.approx(1 - 0.375)
    assert stats.chance_test([1, 0, 0], [0.5, 0.5, 0.5])["p_value"] == pytest.approx(binomtest(1, 3, 0.5).pvalue)


def test_balanced_accuracy_by_hand():
    # Yes: 1 of 2 right, No: 2 of 3 right -> (0.5 + 0.667) / 2
    res = stats.bootstrap_ci_balanced_accuracy(["Yes", "Yes", "No", "No", "No"], [1, 0, 1, 1, 0], n_boot=300)
    assert res["value"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert 0 <= res["ci_low"] <= res["value"] <= res["ci_high"] <= 1


# ---------------------------------------------------------------- the prior-breaking subset


def _prior_run():
    train = [yn(f"a{i}", g, "a") for i, g in enumerate(["Yes", "Yes", "Yes", "No"])]
    train += [yn(f"b{i}", g, "b") for i, g in enumerate(["No", "No", "No", "Yes"])]
    # the prior says Yes for a, No for b: a3, a4 (No) and b3, b4 (Yes) break it
    golds = {"a1": "Yes", "a2": "Yes", "a3": "No", "a4": "No", "b1": "No", "b2": "No", "b3": "Yes", "b4": "Yes"}
    test = [yn(i, g, i[0]) for i, g in golds.items()]
    base = baselines.baselines(train, test, "yes-no")
    samples = {
        "always_yes": [sample("always_yes", q, "Yes", 1.0) for q in test],
        "follower": [sample("follower", q, base["category_prior"]["predictions"][q.id], 0.0) for q in test],
        "knower": [sample("knower", q, q.answers[0], 1.0 if q.answers[0] == "Yes" else -1.0) for q in test],
    }
    return test, base, samples


def test_prior_breaking_figures_by_hand():
    test, base, samples = _prior_run()
    pb = priorbreak.of_run(base, test, samples, "yes-no", n_boot=200, seed=0)
    assert (pb.prior, pb.n, pb.n_test, pb.ids) == ("category_prior", 4, 8, ["a3", "a4", "b3", "b4"])
    assert pb.gold_share == {"Yes": 0.5, "No": 0.5} and pb.gold_share_subset == {"Yes": 0.5, "No": 0.5}
    assert pb.chance == 0.5
    yes = pb.systems["always_yes"]
    # right on b3, b4 only; balanced: Yes 2/2, No 0/2 -> 0.5; margins all equal -> AUC 0.5
    assert yes.metrics["accuracy"].value == 0.5 and yes.metrics["balanced_accuracy"].value == 0.5
    assert yes.metrics["auc"].value == 0.5
    assert yes.answer_share == {"Yes": 1.0} and yes.answer_share_subset == {"Yes": 1.0}
    assert yes.prior_agreement == 0.5  # the prior says Yes on a1..a4
    follower = pb.systems["follower"]
    assert follower.metrics["accuracy"].value == 0.0 and follower.prior_agreement == 1.0
    assert follower.metrics["accuracy"].ci_high == 0.0
    knower = pb.systems["knower"]
    assert [knower.metrics[m].value for m in ("accuracy", "balanced_accuracy", "auc")] == [1.0, 1.0, 1.0]
    pairs = {(c.a, c.b): c for c in pb.comparisons}
    assert pairs[("follower", "knower")].diff == -1.0 and pairs[("follower", "knower")].n == 4
    assert pairs[("follower", "knower")].p_value == pytest.approx(0.125)  # 4 discordant pairs: 2 * 0.5**4


def test_prior_breaking_is_absent_without_categories_or_for_free_text():
    test = [yn("t1", "Yes"), yn("t2", "No")]
    base = baselines.baselines([yn("r1", "Yes")], test, "yes-no")
    assert priorbreak.of_run(base, test, {}, "yes-no", 100, 0) is None
    free = baselines.baselines(
        [Question("r", "?", ["x"], category="c")], [Question("t", "?", ["x"], category="c")], "free-text"
    )
    assert priorbreak.of_run(free, [], {}, "free-text", 100, 0) is None


def test_multiple_choice_answer_bias_counts_positions():
    train, test = _mc_split()
    base = baselines.baselines(train, test, "multiple-choice")
    samples = {"first": [sample("first", q, q.choices[0]) for q in test]}
    pb = priorbreak.of_run(base, test, samples, "multiple-choice", n_boot=100, seed=0)
    # prior: x option 1, y option 2, z (unseen) option 1 -> t2 (option 3), t4 (option 4), t5 (option 2) break it
    assert (pb.prior, pb.ids) == ("category_majority_position", ["t2", "t4", "t5"])
    assert pb.gold_share_subset == pytest.approx({"option 2": 1 / 3, "option 3": 1 / 3, "option 4": 1 / 3})
    assert pb.systems["first"].answer_share == {"option 1": 1.0} and pb.chance == 0.25
    assert pb.systems["first"].metrics["accuracy"].value == 0.0 and "auc" not in pb.systems["first"].metrics


def test_the_report_reads_the_subset_in_a_sentence_and_warns_of_bias():
    test, base, samples = _prior_run()
    pb = priorbreak.of_run(base, test, samples, "yes-no", n_boot=200, seed=0)
    results = RunResults(
        task="t",
        run_id="r",
        created="2026-11-29T10:00:00+00:00",
        answer_format="yes-no",
        headline_metric="accuracy",
        n_test=8,
        seed=0,
        systems={n: SystemResult(kind="prompt") for n in samples},
        prior_breaking=pb,
    )
    sec = prior_section(results)
    rows = {r.name: r for r in sec.rows}
    assert rows["knower"].sentence.startswith(
        "knower answers 100% of the questions where the category's usual answer is wrong (n = 4;"
    )
    assert rows["knower"].sentence.endswith("against 0% for the prior.") and rows["knower"].warnings == []
    (bias,) = rows["always_yes"].warnings
    assert "always_yes answers Yes to 100% of the prior-breaking questions" in bias
    assert "always answering Yes would score 0.50 on the subset, against its 0.50" in bias
    (below,) = rows["follower"].warnings
    assert "scores below chance" in below and "prior's answer on 100% of all test questions" in below
    md = "\n".join(markdown_lines(results))
    assert "**Beyond the label prior** (category_prior): 4 of 8 test questions" in md
    assert "balanced accuracy 0.500" in md and "warning: answer bias" in md
    lines = terminal_lines(results)
    assert lines[0].startswith("always_yes answers 50% of the questions") and lines[1].startswith("  warning: answer")


def test_the_html_report_and_summary_md_show_the_prior_section(tmp_path):
    from harness.report.render import render_report
    from tests.report_fixtures import make_results, write_run

    test, base, samples = _prior_run()
    renamed = dict(zip(("prompt", "lora", "rag"), samples.values()))
    pb = priorbreak.of_run(base, test, renamed, "yes-no", n_boot=200, seed=0)
    results = {**make_results(), "prior_breaking": pb.model_dump(mode="json")}
    run_dir = write_run(tmp_path / "run", results=results)
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert '<h2 id="prior">Beyond the label prior</h2>' in html and 'href="#prior"' in html
    assert "rag answers 100% of the questions where the category&#39;s usual answer is wrong (n = 4;" in html
    assert 'data-system="lora" data-metric="prior_breaking_accuracy" data-value="0.0"' in html
    assert "answer bias: prompt answers Yes to 100%" in html
    md = (run_dir / "summary.md").read_text(encoding="utf-8")
    assert "lora answers 0% of the questions where the category's usual answer is wrong (n = 4;" in md
    # a run without categories has no such section
    plain = write_run(tmp_path / "plain")
    assert 'id="prior"' not in render_report(plain).read_text(encoding="utf-8")
