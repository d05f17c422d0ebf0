"""Hand-worked checks for harness.scorers. No model loading: embeddings come from a fake."""

import random

import numpy as np
import pytest

from harness.scorers import (
    SCORERS,
    ScoreContext,
    answer_pool,
    metric_names_for,
    normalize_answer,
    register_scorer,
    score_samples,
    validate_metric_names,
)


def score(name, prediction, golds, sample=None, ctx=None):
    return SCORERS[name].fn(prediction, golds, sample or {}, ctx or ScoreContext())


class FakeEmbedder:
    """Bag-of-letters vectors, L2-normalised; counts calls and texts so batching can be checked."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 26))
        for i, text in enumerate(texts):
            for ch in text.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - ord("a")] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("The Cat!", "cat"),
        ("  An apple,  a  pear. ", "apple pear"),
        ("Theory of the mind", "theory of mind"),  # "the" only as a whole word
        ("MIT-licensed", "mitlicensed"),  # SQuAD deletes punctuation rather than splitting on it
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


# ---------------------------------------------------------------- choice and exact match


def test_accuracy_uses_first_gold_only():
    assert score("accuracy", "Yes.", ["yes"]) == 1.0
    assert score("accuracy", "no", ["Yes"]) == 0.0
    assert score("accuracy", "b", ["a", "b"]) == 0.0  # golds[0] is the gold choice
    assert score("accuracy", "a", []) is None


def test_exact_match_any_gold():
    golds = ["Apache License 2.0", "Apache-2.0", "the Apache license"]
    assert score("exact_match", "apache license", golds) == 1.0
    assert score("exact_match", "Apache 2.0.", golds) == 0.0  # "apache 20" vs "apache20"
    assert score("exact_match", "APACHE-2.0", golds) == 1.0
    assert score("exact_match", "MIT", golds) == 0.0
    assert score("exact_match", "MIT", []) is None


# ---------------------------------------------------------------- token F1 and ROUGE-L


def test_token_f1_hand_worked():
    # pred -> [cat, sat], gold -> [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert score("token_f1", "the cat sat", ["cat sat down"]) == pytest.approx(0.8)


def test_token_f1_max_over_golds_and_counts_duplicates():
    assert score("token_f1", "cat sat", ["dog", "cat sat down", "cat sat"]) == pytest.approx(1.0)
    # pred [cat, cat] vs gold [cat]: overlap 1 (clipped), P = 1/2, R = 1, F1 = 2/3
    assert score("token_f1", "cat cat", ["cat"]) == pytest.approx(2 / 3)
    assert score("token_f1", "dog", ["cat"]) == 0.0
    assert score("token_f1", "the", ["a"]) == 1.0  # both empty after normalisation


def test_rouge_l_hand_worked_lcs():
    # rouge-score keeps articles: pred [the, cat, on, a, big, red, mat], gold [the, cat, sat, on, the, mat];
    # LCS = the cat on mat = 4; P = 4/7, R = 4/6, F = 2PR / (P + R) = 16/26
    assert score("rouge_l", "The cat on a big red mat", ["the cat sat on the mat"]) == pytest.approx(16 / 26)


def test_rouge_l_is_order_sensitive_unlike_token_f1():
    assert score("token_f1", "mat on cat", ["cat on mat"]) == pytest.approx(1.0)
    # LCS of [mat, on, cat] and [cat, on, mat] is 1 token: P = R = F = 1/3
    assert score("rouge_l", "mat on cat", ["cat on mat"]) == pytest.approx(1 / 3)
    assert score("rouge_l", "mat on cat", ["x", "mat on cat"]) == pytest.approx(1.0)


def test_rouge_l_equals_rouge_score_package():
    from rouge_score import rouge_scorer

    reference = rouge_scorer.RougeScorer(["rougeL"])  # the package's defaults: no stemmer, its own tokenizer
    rng = random.Random(0)
    vocab = ["The", "cat", "dog", "mat,", "sat", "on", "a", "red.", "big", "ran!", "U.S.", "3-4"]
    examples = [
        ("The capital of France is Paris.", "Paris"),
        ("People from China are called Chinese.", "Chinese"),
        ("", "anything"),
    ]
    for _ in range(200):
        pred = " ".join(rng.choices(vocab, k=rng.randint(1, 9)))
        gold = " ".join(rng.choices(vocab, k=rng.randint(1, 40)))
        examples.append((pred, gold))
    for pred, gold in examples:
        expected = reference.score(gold, pred)["rougeL"].fmeasure
        assert score("rouge_l", pred, [gold]) == pytest.approx(expected), (pred, gold)


def test_rouge_l_folds_accents_rouge_score_would_drop():
    from rouge_score import rouge_scorer

    # rouge-score alone keeps a-z only: "Bogotá" becomes "bogot" and "Mariehamn, Åland" loses its "Å"
    assert score("rouge_l", "Bogotá", ["Bogota"]) == 1.0
    assert rouge_scorer.RougeScorer(["rougeL"]).score("Bogota", "Bogotá")["rougeL"].fmeasure == 0.0


# ---------------------------------------------------------------- semantic similarity


def test_semantic_similarity_with_fake_embedder():
    ctx = ScoreContext(embed=FakeEmbedder())
    assert score("semantic_similarity", "permissive license", ["permissive license"], ctx=ctx) == pytest.approx(1.0)
    # "ab" -> (1,1)/sqrt2, "a" -> (1,0): cosine = 1/sqrt2; max over golds picks "ab" exactly
    assert score("semantic_similarity", "ab", ["a"], ctx=ctx) == pytest.approx(1 / np.sqrt(2))
    assert score("semantic_similarity", "ab", ["a", "ba"], ctx=ctx) == pytest.approx(1.0)
    assert score("semantic_similarity", "xyz", ["a"], ctx=ctx) == pytest.approx(0.0)


def test_semantic_similarity_none_without_embedder():
    assert score("semantic_similarity", "a", ["a"]) is None


# ---------------------------------------------------------------- groundedness and length


def _retrieved(*texts):
    return {"retrieved": [{"doc_id": "d", "chunk_id": i, "text": t} for i, t in enumerate(texts)]}


def test_groundedness_fully_supported_unsupported_partial():
    sample = _retrieved("The MIT license permits commercial use.", "Attribution is required.")
    assert score("groundedness", "The MIT license permits commercial use!", [], sample) == 1.0
    # no stemming: "permitted" is not "permits", so 4 of 5 content tokens are supported
    assert score("groundedness", "Commercial use is permitted by the MIT license", [], sample) == pytest.approx(0.8)
    assert score("groundedness", "Patent grant revoked", [], sample) == 0.0
    # content tokens [attribution, required, patent, grant]; 2 of 4 appear in the passages
    assert score("groundedness", "Attribution is required, and a patent grant.", [], sample) == pytest.approx(0.5)


def test_groundedness_not_applicable():
    assert score("groundedness", "anything", [], {"retrieved": None}) is None
    assert score("groundedness", "anything", [], {}) is None
    assert score("groundedness", "it is the", [], _retrieved("text")) is None  # only stop words


def test_answer_length():
    assert score("answer_length", "  Yes, it   does.\n", []) == 3.0
    assert score("answer_length", "", []) == 0.0
    assert SCORERS["answer_length"].higher_is_better is False


# ---------------------------------------------------------------- registry and validation


def test_registry_metadata():
    assert SCORERS["accuracy"].binary and SCORERS["exact_match"].binary
    assert not SCORERS["token_f1"].binary
    assert metric_names_for("yes-no") == ["accuracy", "answer_length"]
    assert set(metric_names_for("free-text")) == {
        "exact_match",
        "has_answer",
        "token_f1",
        "rouge_l",
        "semantic_similarity",
        "answer_length",
        "groundedness",
    }


def test_register_scorer_rejects_duplicates_and_bad_formats():
    with pytest.raises(ValueError, match="already registered"):
        register_scorer("accuracy", kind="yes-no")(lambda p, g, s, c: 0.0)
    with pytest.raises(ValueError, match="unknown answer format"):
        register_scorer("never_registered", kind="essay")


def test_validate_unknown_metric_suggests_close_match():
    with pytest.raises(ValueError) as err:
        validate_metric_names(["rouge_1"], "free-text")
    message = str(err.value)
    assert "'rouge_1'" in message and "did you mean 'rouge_l'?" in message  # errors.did_you_mean's wording
    assert "token_f1" in message and "groundedness" in message  # lists the valid ones


def test_validate_metric_for_wrong_format():
    with pytest.raises(ValueError, match=r"'token_f1' does not apply to answer format 'yes-no'"):
        validate_metric_names(["accuracy", "token_f1"], "yes-no")
    with pytest.raises(ValueError, match="unknown answer format"):
        validate_metric_names(["accuracy"], "essay")


def test_validate_returns_deduplicated_names():
    assert validate_metric_names(["token_f1", "rouge_l", "token_f1"], "free-text") == ["token_f1", "rouge_l"]


# ---------------------------------------------------------------- score_samples


def test_score_samples_fills_scores_and_batches_embeddings():
    embed = FakeEmbedder()
    samples = [
        {"prediction": "the cat sat", "golds": ["cat sat down"], "retrieved": None},
        {
            "prediction": "cat sat down",
            "golds": ["cat sat down", "a cat sat"],
            "retrieved": [{"text": "A cat sat down."}],
        },
        {"prediction": "dog", "golds": ["cat"], "scores": {"kept": 1.0}},
    ] * 20
    samples = [dict(s) for s in samples]  # distinct dicts, repeated texts
    score_samples(samples, metric_names_for("free-text"), "free-text", ScoreContext(embed=embed))

    assert len(embed.calls) == 1  # one batch for the whole split, each text once
    assert sorted(embed.calls[0]) == sorted({"the cat sat", "cat sat down", "a cat sat", "dog", "cat"})

    first, second, third = samples[:3]
    assert first["scores"]["token_f1"] == pytest.approx(0.8)
    assert first["scores"]["groundedness"] is None
    assert second["scores"]["exact_match"] == 1.0
    assert second["scores"]["semantic_similarity"] == pytest.approx(1.0)
    assert second["scores"]["groundedness"] == 1.0
    assert third["scores"]["exact_match"] == 0.0 and third["scores"]["kept"] == 1.0
    assert all(type(v) is float for s in samples for v in s["scores"].values() if v is not None)


def test_score_samples_skips_metrics_for_other_formats_and_rejects_unknown():
    samples = [{"prediction": "Yes", "golds": ["yes"]}]
    score_samples(samples, ["accuracy", "token_f1", "semantic_similarity"], "yes-no", ScoreContext())
    assert samples[0]["scores"] == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        score_samples(samples, ["acuracy"], "yes-no", ScoreContext())


def test_score_samples_without_embedder_or_semantic_metric_never_embeds():
    embed = FakeEmbedder()
    samples = [{"prediction": "a", "golds": ["a"]}]
    score_samples(samples, ["token_f1"], "free-text", ScoreContext(embed=embed))
    assert embed.calls == []
    score_samples(samples, ["semantic_similarity"], "free-text", ScoreContext())
    assert samples[0]["scores"]["semantic_similarity"] is None


# ---------------------------------------------------------------- SQuAD reference


def _squad_reference():
    """normalize_answer and f1_score of the official SQuAD v1.1 evaluation script (evaluate-v1.1.py), verbatim
    but for layout: the reference our normalisation and token F1 must agree with."""
    import re
    import string
    from collections import Counter

    def normalize_answer(s):
        def remove_articles(text):
            return re.sub(r"\b(a|an|the)\b", " ", text)

        def white_space_fix(text):
            return " ".join(text.split())

        def remove_punc(text):
            exclude = set(string.punctuation)
            return "".join(ch for ch in text if ch not in exclude)

        return white_space_fix(remove_articles(remove_punc(s.lower())))

    def f1_score(prediction, ground_truth):
        prediction_tokens = normalize_answer(prediction).split()
        ground_truth_tokens = normalize_answer(ground_truth).split()
        common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
        num_same = sum(common.values())
        if num_same == 0:
            return 0
        precision = 1.0 * num_same / len(prediction_tokens)
        recall = 1.0 * num_same / len(ground_truth_tokens)
        return (2 * precision * recall) / (precision + recall)

    return normalize_answer, f1_score


SQUAD_EXAMPLES = [  # (prediction, gold): SQuAD-style answers, with articles, punctuation and repeats
    ("Denver Broncos", "Denver Broncos"),
    ("the Denver Broncos!", "Denver Broncos"),
    ("Santa Clara, California", "Levi's Stadium in the San Francisco Bay Area at Santa Clara, California."),
    ("1,000", "1000"),
    ("an apple a day", "The apple"),
    ("New York New York", "New York"),
    ("gold", "golden"),
    ("Saint Bernadette Soubirous", "Saint Bernadette"),
]


@pytest.mark.parametrize("pred, gold", SQUAD_EXAMPLES)
def test_normalisation_and_token_f1_equal_the_squad_script(pred, gold):
    ref_normalize, ref_f1 = _squad_reference()
    assert normalize_answer(pred) == ref_normalize(pred)
    assert score("token_f1", pred, [gold]) == pytest.approx(ref_f1(pred, gold))
    assert score("exact_match", pred, [gold]) == float(ref_normalize(pred) == ref_normalize(gold))


# ---------------------------------------------------------------- has_answer (alias match)


def _has(prediction, golds, question="", category=None, pool=()):
    ctx = ScoreContext(pool=answer_pool([_Q(category, list(pool))]) if pool else {})
    return score("has_answer", prediction, golds, {"question": question, "category": category}, ctx)


class _Q:
    def __init__(self, category, answers):
        self.category, self.answers = category, answers


CAPITALS = ["Mariehamn", "Oslo", "Bergen", "New Delhi", "Delhi", "Paris"]


@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("The capital of Åland Islands is Mariehamn.", "Mariehamn", 1.0),  # a sentence around the answer
        ("Mariehamn", "Mariehamn", 1.0),
        ("Oslo or Mariehamn", "Mariehamn", 0.0),  # the guard: two capitals named
        ("Bergen, perhaps Oslo", "Oslo", 0.0),
        ("Norway", "No", 0.0),  # whole words only
        ("It is New Delhi.", "New Delhi", 1.0),  # "Delhi", another capital, lies inside the gold occurrence
        ("Delhi", "New Delhi", 0.0),
        ("mariehamn!", "Mariehamn", 1.0),
        ("Bogota", "Bogotá", 1.0),  # accents folded on both sides
        ("", "Mariehamn", 0.0),
    ],
)
def test_has_answer_hand_made(prediction, gold, expected):
    assert _has(prediction, [gold], category="capital", pool=CAPITALS) == expected


def test_has_answer_guard_ignores_answers_the_question_names_and_other_kinds():
    pool = answer_pool([_Q("capital", ["Oslo", "Paris"]), _Q("country", ["Norway", "France"])])
    ctx = ScoreContext(pool=pool)
    sample = {"question": "Is the capital of Norway Oslo or Paris?", "category": "capital"}
    assert score("has_answer", "Oslo, not Paris", ["Oslo"], sample, ctx) == 1.0  # Paris is in the question
    sample = {"question": "Which city is the capital of Norway?", "category": "capital"}
    assert score("has_answer", "Oslo is in Norway, not France", ["Oslo"], sample, ctx) == 1.0  # countries differ
    assert score("has_answer", "Oslo or Paris", ["Oslo"], sample, ctx) == 0.0
    # Without a pool (no other questions known) there is no guard, only the whole-word match.
    assert score("has_answer", "Oslo or Paris", ["Oslo"], sample, ScoreContext()) == 1.0


def test_has_answer_any_alias_and_known_false_positive():
    assert _has("It is Aland.", ["Åland Islands", "Aland"]) == 1.0
    assert _has("No idea", ["No"]) == 1.0  # the documented false positive: "No" as a word of another sentence
    assert _has("anything", []) is None
    assert SCORERS["has_answer"].binary  # paired comparisons use McNemar


def test_rouge_l_ranks_right_over_wrong_whatever_the_gold_answers_length():
    """Long gold answers: a reply with the right content keeps its lead over a wrong one of the same length as
    the gold grows from one sentence to three (the ranking of systems does not flip with answer length)."""
    sentences = [
        "You may copy and share the work if you keep the copyright notice.",
        "Changes must be released under the same licence.",
        "The authors give no warranty of any kind.",
    ]
    right = "You can copy and share it as long as the copyright notice stays."
    wrong = "Nobody may sell the software or use it in a commercial product at all."
    for n in (1, 2, 3):
        gold = " ".join(sentences[:n])
        assert score("rouge_l", right, [gold]) > score("rouge_l", wrong, [gold]) > 0, n
        assert score("token_f1", right, [gold]) > score("token_f1", wrong, [gold]), n
