"""A multiple-choice task written from docs/tasks.md, run end to end on the tiny model (issue 15): position
baselines, the test against the strongest of them, and the prior-breaking subset in results.json, the report
and summary.md, each checked against figures recomputed here from the task's own rows."""

from __future__ import annotations

import json
from collections import Counter

import yaml

from tests.conftest import SYSTEM_PROMPT, run_cli

CATEGORIES = ["colour", "shape", "size"]


def mc_rows() -> list[dict]:
    """60 questions in three categories; the gold option is the first one 60% of the time (skewed), and each
    category has its own usual position."""
    rows = []
    for i in range(60):
        cat = CATEGORIES[i % 3]
        usual = CATEGORIES.index(cat) % 2  # colour and size: option 1; shape: option 2
        pos = usual if i % 5 < 3 else (usual + 1 + i % 2) % 4
        choices = [f"{cat} answer {i}-{k}" for k in range(4)]
        rows.append(
            {
                "id": f"q{i:02d}",
                "question": f"Which {cat} does item {i} have?",
                "choices": choices,
                "answer": choices[pos],
                "category": cat,
                "split": "test" if i % 3 == i % 2 else "train",
            }
        )
    return rows


def test_a_multiple_choice_run_reports_position_baselines_and_the_prior_breaking_subset(
    tmp_path, tiny_model_dir, harness_home
):
    rows = mc_rows()
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "tiny-mc",
        "description": "Four-option questions with a skewed gold position (test fixture).",
        "answer_format": "multiple-choice",
        "data": {"questions": {"path": "mc.jsonl"}, "split": {"by": "given"}},
        "system_prompt": SYSTEM_PROMPT,
        "model": str(tiny_model_dir),
        "systems": ["prompt"],
        "evaluation": {"bootstrap": 200, "warmup": 1, "dtype": "float32"},
        "seed": 0,
    }
    task = tmp_path / "tiny-mc.yaml"
    task.write_text(yaml.safe_dump(cfg, sort_keys=False))
    code, out, err = run_cli("run", task, "--reports-dir", tmp_path / "r", "--indices-dir", tmp_path / "i", "--quiet")
    assert code == 0, err
    run_dir = (tmp_path / "r" / "tiny-mc" / "latest").resolve()
    res = json.loads((run_dir / "results.json").read_text())
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]

    # the baselines, recomputed from the rows: by position, never by answer text
    train = [r for r in rows if r["split"] == "train"]
    test = {r["id"]: r for r in rows if r["split"] == "test"}
    pos = {r["id"]: r["choices"].index(r["answer"]) for r in rows}
    assert set(res["baselines"]) == {
        "majority_position",
        "category_majority_position",
        "category_position_prior",
        "uniform_random",
    }
    top = min(Counter(pos[r["id"]] for r in train).items(), key=lambda kv: (-kv[1], kv[0]))[0]
    majority = sum(pos[i] == top for i in test) / len(test)
    assert res["baselines"]["majority_position"]["accuracy"] == majority
    usual = {
        c: min(Counter(pos[r["id"]] for r in train if r["category"] == c).items(), key=lambda kv: (-kv[1], kv[0]))[0]
        for c in CATEGORIES
    }
    assert res["baselines"]["uniform_random"]["accuracy"] == 0.25

    # the system's test is against the strongest baseline, Holm-adjusted (one system: a family of one)
    vb = res["systems"]["prompt"]["vs_best_baseline"]
    strongest = max(v["accuracy"] for v in res["baselines"].values())
    assert res["baselines"][vb["baseline"]]["accuracy"] == strongest
    assert vb["p_holm"] == vb["p_value"] and vb["significant"] == (vb["p_holm"] < 0.05)

    # the prior-breaking subset: test questions whose gold is not at their category's usual position
    pb = res["prior_breaking"]
    ids = sorted(i for i, r in test.items() if pos[i] != usual[r["category"]])
    assert pb["prior"] == "category_majority_position" and sorted(pb["ids"]) == ids and pb["n"] == len(ids) > 0
    inside = [s for s in samples if s["id"] in set(ids)]
    acc = sum(s["scores"]["accuracy"] for s in inside) / len(inside)
    assert pb["systems"]["prompt"]["metrics"]["accuracy"]["value"] == acc
    answered = Counter(f"option {test[s['id']]['choices'].index(s['prediction']) + 1}" for s in samples)
    assert pb["systems"]["prompt"]["answer_share"] == {k: n / len(samples) for k, n in sorted(answered.items())}

    md = (run_dir / "summary.md").read_text()
    assert f"**Beyond the label prior** (category_majority_position): {len(ids)} of {len(test)} test questions" in md
    assert (
        f"prompt answers {acc:.0%} of the questions where the category's usual answer is wrong (n = {len(ids)};" in md
    )
    assert f"prompt answers {acc:.0%} of the questions where the category's usual answer is wrong" in out  # terminal
    html = (run_dir / "index.html").read_text()
    assert '<h2 id="prior">Beyond the label prior</h2>' in html and "majority_position" in html
