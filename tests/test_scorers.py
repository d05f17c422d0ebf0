"""Hand-worked checks for harness.scorers. No model loading: embeddings come from a fake."""

import random

import numpy as np
import pytest

from harness.scorers import (
    SCORERS,
    ScoreContext,
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
    # pred [cat, on, big, red, mat], gold [cat, sat, on, mat]; LCS = cat on mat = 3
    # P = 3/5, R = 3/4, F = 2 * 0.6 * 0.75 / 1.35 = 2/3
    assert score("rouge_l", "The cat on a big red mat", ["the cat sat on the mat"]) == pytest.approx(2 / 3)


def test_rouge_l_is_order_sensitive_unlike_token_f1():
    assert score("token_f1", "mat on cat", ["cat on mat"]) == pytest.approx(1.0)
    # LCS of [mat, on, cat] and [cat, on, mat] is 1 token: P = R = F = 1/3
    assert score("rouge_l", "mat on cat", ["cat on mat"]) == pytest.approx(1 / 3)
    assert score("rouge_l", "mat on cat", ["x", "mat on cat"]) == pytest.approx(1.0)


def test_rouge_l_agrees_with_rouge_score_package():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    vocab = ["cat", "dog", "mat", "sat", "on", "red", "big", "ran"]  # no articles or punctuation
    for _ in range(200):
        pred = " ".join(rng.choices(vocab, k=rng.randint(1, 9)))
        gold = " ".join(rng.choices(vocab, k=rng.randint(1, 9)))
        expected = reference.score(gold, pred)["rougeL"].fmeasure
        assert score("rouge_l", pred, [gold]) == pytest.approx(expected), (pred, gold)


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
