# python tasks/legal-qa/prepare.py  (regenerates questions.jsonl from the licence data pychoosealicense ships)
#
# Builds a yes/no question set about open-source licences from the metadata
# that the `pychoosealicense` package ships (the choosealicense.com data):
# every licence file under `pychoosealicense/_licenses/*.txt` starts with a
# YAML header listing the licence's permissions, conditions and limitations,
# and `pychoosealicense/rules/rules.yml` describes the 17 (category, rule)
# pairs.  One question is written per (licence, category, rule); the gold
# answer is "Yes" when the licence lists that rule under that category.
#
# Standalone: stdlib + PyYAML only.  The package is located with
# importlib.util.find_spec and never imported.  Output is deterministic
# (rows sorted by id, keys sorted, phrasing chosen by a SHA-256 of the id).
from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OUT_PATH = HERE / "questions.jsonl"

CATEGORIES = ("permissions", "conditions", "limitations")
EXPECTED_LICENCES = 47
EXPECTED_PAIRS = 17
CHOICES = ["Yes", "No"]

# Phrasings per (category, rule).  `{name}` is the licence title (a leading
# "The " is dropped so that "the {name}" reads naturally).  Each phrasing
# follows the rule's description in rules.yml; the same-licence and notice
# variants spell out what separates them from their sibling rules so that
# the yes/no answer is unambiguous.
TEMPLATES: dict[tuple[str, str], list[str]] = {
    # ---- permissions ----------------------------------------------------
    ("permissions", "commercial-use"): [
        "Under the {name}, may the licensed material and works derived from it be used for commercial purposes?",
        "Does the {name} permit commercial use of the licensed work and its derivatives?",
        "Can a business use material released under the {name}, or derivatives of it, for commercial purposes?",
        "Is commercial use of the licensed material allowed under the {name}?",
    ],
    ("permissions", "modifications"): [
        "Does the {name} allow the licensed material to be modified?",
        "Under the {name}, am I permitted to make changes to the licensed work?",
        "May a licensee modify material that is released under the {name}?",
        "Is modification of the licensed material permitted by the {name}?",
    ],
    ("permissions", "distribution"): [
        "Does the {name} permit the licensed material to be distributed?",
        "Under the {name}, may I distribute copies of the licensed work to others?",
        "Is redistribution of material licensed under the {name} allowed?",
        "May a licensee distribute the licensed material under the terms of the {name}?",
    ],
    ("permissions", "private-use"): [
        "Under the {name}, may the licensed material be used and modified in private?",
        "Does the {name} allow me to use and modify the licensed work privately, for my own purposes?",
        "Is private use and modification of the licensed material permitted by the {name}?",
        "Can an individual or company use and modify material under the {name} internally, in private?",
    ],
    ("permissions", "patent-use"): [
        "Does the {name} give an express grant of patent rights from contributors?",
        "Do contributors expressly grant users a licence to their patents under the {name}?",
        "Does the {name} contain an explicit patent licence from contributors to recipients of the licensed material?",
        "Under the {name}, do recipients receive an express grant of the contributors' patent rights?",
    ],
    # ---- conditions -----------------------------------------------------
    ("conditions", "include-copyright"): [
        "Does the {name} require a copy of the licence and the copyright notice to be included with every copy of the licensed material, whatever its form?",
        "When redistributing material under the {name}, in source or binary form, must I include the licence text and the copyright notice?",
        "Under the {name}, must the licence and copyright notice accompany all copies of the licensed work, not only source-code copies?",
    ],
    ("conditions", "include-copyright--source"): [
        "Does the {name} require the licence and copyright notice to be included with copies in source form while not requiring them for binaries?",
        "Under the {name}, must the licence and copyright notice be kept in source-code distributions, with binary-only distributions exempt from that requirement?",
        "Is the notice requirement of the {name} limited to source form, i.e. must the licence and copyright notice be included with source copies but not with compiled binaries?",
    ],
    ("conditions", "document-changes"): [
        "Does the {name} require that changes made to the licensed material be documented?",
        "Under the {name}, if I modify the licensed work, must I state the changes I made?",
        "Must modifications to material under the {name} be accompanied by a notice documenting what was changed?",
        "Is a licensee who alters the licensed material obliged by the {name} to document those changes?",
    ],
    ("conditions", "disclose-source"): [
        "Does the {name} require that source code be made available when the licensed material is distributed?",
        "Under the {name}, if I distribute the licensed work, must I also make its source code available?",
        "Is a distributor of material licensed under the {name} obliged to make the source code available?",
        "When software under the {name} is distributed, does the licence require the source code to be disclosed?",
    ],
    ("conditions", "network-use-disclose"): [
        "Under the {name}, are users who interact with the licensed material over a network given the right to receive a copy of its source code?",
        "Does the {name} treat making the licensed software available to users over a network like distribution, entitling those users to a copy of the source code?",
        "If the licensed software is offered to users over a network, does the {name} give those users the right to receive its source code?",
    ],
    ("conditions", "same-license"): [
        "Does the {name} require that modifications be released under the same licence (or, in some cases, a similar or related one) when the licensed material is distributed, with no exception for works that only use it as a library and no restriction to modified files?",
        "Under the {name}, must all distributed modifications be licensed under the same licence (or a similar or related one), as a full copyleft rather than a file-level or library-level one?",
        "Is the {name} a copyleft licence that requires modifications to be released under the same licence when distributed, without a library exception and without limiting the obligation to individual files?",
    ],
    ("conditions", "same-license--file"): [
        "Does the {name} require modifications of existing files to be released under the same licence when the licensed material is distributed, while leaving new files free to be licensed differently?",
        "Is the {name} a file-level copyleft, where changes to the existing licensed files must stay under the same licence when distributed?",
        "Under the {name}, must modified versions of the existing licensed files be distributed under the same (or a similar or related) licence, with the copyleft obligation scoped to those files?",
    ],
    ("conditions", "same-license--library"): [
        "Does the {name} require modifications to be released under the same licence when distributed, while possibly exempting works that only use the licensed material as a library?",
        "Under the {name}, must distributed modifications stay under the same (or a similar or related) licence, with that condition possibly not applying to works that merely use the material as a library?",
        "Is the {name} a library-style weak copyleft, in which modifications must keep the same licence but a work that only uses the licensed material as a library may not have to?",
    ],
    # ---- limitations ----------------------------------------------------
    ("limitations", "trademark-use"): [
        "Does the {name} explicitly state that it does not grant any trademark rights?",
        "Does the {name} expressly exclude trademark rights from what it grants?",
        "Is there an explicit statement in the {name} that no rights to use trademarks are granted?",
    ],
    ("limitations", "liability"): [
        "Does the {name} include a limitation of liability?",
        "Does the {name} contain a clause limiting the liability of the authors or licensors?",
        "Under the {name}, is the liability of the licensor or contributors expressly limited?",
    ],
    ("limitations", "patent-use"): [
        "Does the {name} explicitly state that it grants no rights in contributors' patents?",
        "Does the {name} expressly withhold any licence under the contributors' patents?",
        "Is there an explicit statement in the {name} that no patent rights of the contributors are granted?",
    ],
    ("limitations", "warranty"): [
        "Does the {name} explicitly state that it does not provide any warranty?",
        "Does the {name} contain an explicit disclaimer of warranty?",
        "Is the licensed material provided without any warranty, as the {name} explicitly states?",
    ],
}


def package_dir() -> Path:
    spec = importlib.util.find_spec("pychoosealicense")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pychoosealicense is not installed (pip install pychoosealicense)")
    return Path(next(iter(spec.submodule_search_locations)))


def split_front_matter(text: str, path: Path) -> dict:
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: no YAML front matter")
    _, header, _body = text.split("---\n", 2)
    meta = yaml.safe_load(header)
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: front matter is not a mapping")
    return meta


def load_rules(pkg: Path) -> list[tuple[str, str, str]]:
    rules = yaml.safe_load((pkg / "rules" / "rules.yml").read_text(encoding="utf-8"))
    pairs = []
    for cat in CATEGORIES:
        for rule in rules[cat]:
            pairs.append((cat, rule["tag"], rule["description"]))
    counts = collections.Counter(c for c, _, _ in pairs)
    assert counts == {"permissions": 5, "conditions": 8, "limitations": 4}, counts
    assert len(pairs) == EXPECTED_PAIRS, len(pairs)
    assert set(TEMPLATES) == {(c, t) for c, t, _ in pairs}, "templates out of sync with rules.yml"
    return pairs


def load_licences(pkg: Path) -> list[dict]:
    licences = []
    for path in sorted((pkg / "_licenses").glob("*.txt")):
        meta = split_front_matter(path.read_text(encoding="utf-8"), path)
        stem = path.stem.lower()
        for key in ("title", "spdx-id"):
            assert meta.get(key), f"{path}: missing {key}"
        licences.append({"doc_id": stem, "title": str(meta["title"]).strip(), "meta": meta})
    assert len(licences) == EXPECTED_LICENCES, f"expected {EXPECTED_LICENCES} licences, found {len(licences)}"
    return licences


def pick(templates: list[str], row_id: str) -> str:
    h = int(hashlib.sha256(row_id.encode("utf-8")).hexdigest(), 16)
    return templates[h % len(templates)]


def build_rows(pkg: Path) -> list[dict]:
    pairs = load_rules(pkg)
    known = {(c, t) for c, t, _ in pairs}
    rows = []
    for lic in load_licences(pkg):
        meta = lic["meta"]
        listed = set()
        for cat in CATEGORIES:
            for tag in meta.get(cat) or []:
                assert (cat, tag) in known, f"{lic['doc_id']}: unknown {cat}/{tag}"
                listed.add((cat, tag))
        title = lic["title"]
        name = title[4:] if title.startswith("The ") else title
        for cat, tag, _desc in pairs:
            row_id = f"{lic['doc_id']}--{cat}--{tag}"
            rows.append(
                {
                    "id": row_id,
                    "question": pick(TEMPLATES[(cat, tag)], row_id).format(name=name),
                    "answer": "Yes" if (cat, tag) in listed else "No",
                    "choices": list(CHOICES),
                    "doc_id": lic["doc_id"],
                    "category": f"{cat}/{tag}",
                    "licence": title,
                }
            )
    rows.sort(key=lambda r: r["id"])
    return rows


def check(rows: list[dict]) -> None:
    assert len(rows) == EXPECTED_LICENCES * EXPECTED_PAIRS, len(rows)
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), "duplicate ids"
    answers = collections.Counter(r["answer"] for r in rows)
    assert set(answers) == {"Yes", "No"}, answers
    slugs = {r["category"].split("/", 1)[1] for r in rows}
    for r in rows:
        q = r["question"]
        assert "{" not in q and "}" not in q, q
        assert not re.search(r"\btags?\b|front matter", q, re.I), q
        assert not any(s in q for s in slugs if "-" in s), q


def main() -> None:
    pkg = package_dir()
    rows = build_rows(pkg)
    check(rows)
    data = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    OUT_PATH.write_bytes(data.encode("utf-8"))

    answers = collections.Counter(r["answer"] for r in rows)
    print(f"wrote {len(rows)} rows to {OUT_PATH}")
    print(f"licences: {len({r['doc_id'] for r in rows})}  categories: {len({r['category'] for r in rows})}")
    print(
        f"answers: Yes={answers['Yes']} ({answers['Yes'] / len(rows):.1%})  No={answers['No']} ({answers['No'] / len(rows):.1%})"
    )
    print(f"{'category':45s} {'yes':>4s} {'n':>4s} {'yes-rate':>8s}")
    by_cat: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        by_cat[r["category"]][0] += r["answer"] == "Yes"
        by_cat[r["category"]][1] += 1
    for cat in sorted(by_cat):
        y, n = by_cat[cat]
        print(f"{cat:45s} {y:4d} {n:4d} {y / n:8.1%}")


if __name__ == "__main__":
    main()
