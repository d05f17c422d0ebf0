"""Seeded stratified draws of questions: the dev split, the calibration set and the `--limit` sample.

A draw that takes the first N questions, or whole documents at random, can be unrepresentative: legal-qa's dev
split once held five permissive licences only (Yes-rate 0.39 against 0.54 in training), and `--limit 10` took
all ten questions from one licence. Each draw here is seeded and balanced over the strata that matter:

- `choose_dev_keys`: the documents (or questions) that make the dev split, chosen so that dev's mix of
  (category, answer) is as close as it can be to what stays in training;
- `calibration_sample`: the dev questions a yes/no threshold is fitted on, with the training split's answer mix
  (stratified by answer, and within each answer spread over the categories as in training);
- `limited_sample`: `--limit N` test questions spread over categories and documents in proportion to the test
  split.

Questions are duck-typed (`id`, `category`, `doc_id`, `answers`, `choices`): this module imports nothing of the
harness, so data.py and run.py can both use it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Hashable, Sequence


def answer_stratum(q, answer_format: str) -> Hashable:
    """The answer a draw balances: yes/no, the answer; multiple choice, the gold option's position (the texts
    differ from question to question); free text, none."""
    if answer_format == "yes-no":
        return q.answers[0]
    if answer_format == "multiple-choice" and q.choices and q.answers[0] in q.choices:
        return q.choices.index(q.answers[0])
    return None


def _mix(counts: Counter) -> dict:
    n = sum(counts.values())
    return {k: v / n for k, v in counts.items()} if n else {}


def _distance(a: Counter, b: Counter) -> float:
    """Total variation distance between two mixes (0: the same shares, 1: nothing in common)."""
    pa, pb = _mix(a), _mix(b)
    return sum(abs(pa.get(k, 0.0) - pb.get(k, 0.0)) for k in set(pa) | set(pb)) / 2


def choose_dev_keys(
    questions: Sequence, key: Callable, candidates: Sequence[Hashable], n_dev: int, answer_format: str
) -> list[Hashable]:
    """`n_dev` of `candidates` (keys: document ids or question ids, in the split's seeded order) whose questions'
    (category, answer) mix is closest to that of the candidates left for training.

    Keys of one question each (a by-question split) are allocated over the strata in proportion, the first
    ones of each stratum in seeded order. Keys of many questions (documents) are chosen greedily: each step
    adds the document that brings the two mixes closest; ties go to the earlier key, so the seed decides."""
    stratum = lambda q: (q.category, answer_stratum(q, answer_format))
    per_key: dict[Hashable, Counter] = {k: Counter() for k in candidates}
    for q in questions:
        k = key(q)
        if k in per_key:
            per_key[k][stratum(q)] += 1
    n_dev = min(n_dev, len(candidates))
    if all(sum(c.values()) <= 1 for c in per_key.values()):
        groups: dict[Hashable, list] = {}
        for k in candidates:
            groups.setdefault(next(iter(per_key[k]), None), []).append(k)
        shares = {s: len(ks) / len(candidates) for s, ks in groups.items()}
        take = _allocate(shares, n_dev, {s: len(ks) for s, ks in groups.items()})
        chosen = {k for s, m in take.items() for k in groups[s][:m]}
        return [k for k in candidates if k in chosen]
    rest = sum(per_key.values(), Counter())
    chosen: list[Hashable] = []
    dev: Counter = Counter()
    for _ in range(n_dev):
        best = min(
            (k for k in candidates if k not in chosen),
            key=lambda k: _distance(dev + per_key[k], rest - per_key[k]),
        )
        chosen.append(best)
        dev, rest = dev + per_key[best], rest - per_key[best]
    return chosen


def _allocate(shares: dict, n: int, available: dict) -> dict:
    """Largest-remainder allocation of `n` over `shares`, never more than `available` per stratum; what a full
    stratum cannot take goes to the others, in order of their remainders."""
    raw = {k: shares[k] * n for k in shares}
    take = {k: min(int(raw[k]), available.get(k, 0)) for k in shares}
    order = sorted(shares, key=lambda k: (-(raw[k] - int(raw[k])), str(k)))
    while sum(take.values()) < n:
        room = [k for k in order if take[k] < available.get(k, 0)]
        if not room:
            break
        for k in room[: n - sum(take.values())]:
            take[k] += 1
    return take


def calibration_sample(dev: Sequence, train: Sequence, n: int, seed: int, answer_format: str) -> list:
    """At most `n` dev questions whose answer mix is the training split's, spread over the categories as the
    training questions with that answer are. When dev has too few questions of one answer to keep the mix at
    `n`, the sample shrinks until the mix holds. Returned in dev order."""
    rng = random.Random(seed)
    ans = lambda q: answer_stratum(q, answer_format)
    train_answers = Counter(ans(q) for q in train)
    pool: dict[Hashable, list] = {}
    for q in dev:
        pool.setdefault(ans(q), []).append(q)
    shares = {a: c / len(train) for a, c in train_answers.items() if a in pool} if train else {}
    if not shares:  # no answer of the training split in dev (or no training split): dev's own mix
        shares = {a: len(qs) / len(dev) for a, qs in pool.items()} if dev else {}
    total = sum(shares.values())
    shares = {a: s / total for a, s in shares.items()}
    # the largest size the answers' shares allow with what dev holds
    size = min([n, *(int(len(pool[a]) / s + 1e-9) for a, s in shares.items() if s > 0)])
    per_answer = _allocate(shares, size, {a: len(pool[a]) for a in shares})
    picked: list = []
    for a, k in per_answer.items():
        cats = Counter(q.category for q in train if ans(q) == a) or Counter(q.category for q in pool[a])
        by_cat: dict[Hashable, list] = {}
        for q in pool[a]:
            by_cat.setdefault(q.category, []).append(q)
        for qs in by_cat.values():
            rng.shuffle(qs)
        cat_shares = _mix(Counter({c: cats.get(c, 0) for c in by_cat}))
        if not any(cat_shares.values()):
            cat_shares = {c: len(qs) / len(pool[a]) for c, qs in by_cat.items()}
        take = _allocate(cat_shares, k, {c: len(qs) for c, qs in by_cat.items()})
        for c, m in take.items():
            picked += by_cat[c][:m]
    keep = {id(q) for q in picked}
    return [q for q in dev if id(q) in keep]


def limited_sample(test: Sequence, n: int, seed: int) -> list:
    """`n` test questions spread over documents (where questions name one) and categories in proportion to the
    test split: each pick is the question whose document, then category, is furthest below its share so far;
    ties are broken by a seeded shuffle. Returned in test order; every system of a run gets the same sample."""
    if n >= len(test):
        return list(test)
    order = list(range(len(test)))
    random.Random(seed).shuffle(order)
    rank = {i: r for r, i in enumerate(order)}
    docs = Counter(q.doc_id for q in test)
    cats = Counter(q.category for q in test)
    got_doc: Counter = Counter()
    got_cat: Counter = Counter()
    left = set(range(len(test)))
    chosen = []
    for _ in range(n):
        i = min(
            left,
            key=lambda i: (
                (got_doc[test[i].doc_id] + 1) / docs[test[i].doc_id],
                (got_cat[test[i].category] + 1) / cats[test[i].category],
                rank[i],
            ),
        )
        left.remove(i)
        chosen.append(i)
        got_doc[test[i].doc_id] += 1
        got_cat[test[i].category] += 1
    return [test[i] for i in sorted(chosen)]


def yes_rate(questions: Sequence) -> float | None:
    """Share of questions whose gold answer is Yes (None for none)."""
    return round(sum(q.answers[0] == "Yes" for q in questions) / len(questions), 4) if questions else None
