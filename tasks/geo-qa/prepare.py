# python tasks/geo-qa/prepare.py  (regenerates questions.jsonl and corpus.jsonl from the data countryinfo ships)
#
# Builds a free-text question set about the world's countries and territories from the per-country JSON
# files that the `countryinfo` package ships (`countryinfo/data/*.json`: name, alternative spellings,
# capital, region, demonym, currencies, calling codes, languages, borders, provinces...).
#
# Questions (one kind per `category`), each answerable in a few words, several spellings accepted:
#   capital          What is the capital of France?                      Paris
#   country          Which country has Ouagadougou as its capital?       Burkina Faso (or Upper Volta, ...)
#   demonym          What are people from Albania called?                Albanian
#   currency         What is the ISO 4217 code of Japan's currency?      JPY
#   calling-code     What is the international dialling code of Peru?    +51
# The corpus is one fact sheet per country, written from the same data, so RAG has documents to retrieve
# and the `doc_id` of each question names the country it is about (the split holds out whole countries).
#
# Standalone: stdlib only. The package is located with importlib.util.find_spec and never imported.
# Output is deterministic (rows sorted by id, keys sorted, phrasing chosen by a SHA-256 of the id).
from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import re
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "questions.jsonl"
CORPUS = HERE / "corpus.jsonl"
EXPECTED_COUNTRIES = 253  # 254 files; Curaçao ships twice (Curaçao.json, curaçao.json)

TEMPLATES = {
    "capital": [
        "What is the capital of {name}?",
        "Which city is the capital of {name}?",
        "Name the capital city of {name}.",
    ],
    "country": [
        "Which country or territory has {capital} as its capital?",
        "{capital} is the capital of which country or territory?",
    ],
    "demonym": ["What are people from {name} called?", "What is the demonym for people from {name}?"],
    "currency": [
        "What is the ISO 4217 code of the currency used in {name}?",
        "Which three-letter ISO 4217 currency code does {name} use?",
    ],
    "calling-code": [
        "What is the international dialling code of {name}?",
        "Which country calling code do phone numbers in {name} use?",
    ],
}


def package_dir() -> Path:
    spec = importlib.util.find_spec("countryinfo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("countryinfo is not installed (pip install countryinfo)")
    return Path(next(iter(spec.submodule_search_locations)))


def fold(text: str) -> str:
    """ASCII spelling of a name: Bogotá -> Bogota."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().strip()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", fold(text).lower()).strip("-")


def latin(text: str) -> bool:
    return all(not ch.isalpha() or "LATIN" in unicodedata.name(ch, "") for ch in text)


def spellings(*names: str) -> list[str]:
    """Distinct acceptable spellings, in order: each name, its ASCII form, and without a leading 'The'."""
    out: list[str] = []
    for name in names:
        name = name.strip().strip(",")
        for v in (name, fold(name), re.sub(r"^the\s+", "", name, flags=re.I)):
            if v and v not in out:
                out.append(v)
    return out


def pick(templates: list[str], row_id: str) -> str:
    h = int(hashlib.sha256(row_id.encode("utf-8")).hexdigest(), 16)
    return templates[h % len(templates)]


def load_countries(pkg: Path) -> list[dict]:
    countries, seen = [], set()
    for path in sorted((pkg / "data").glob("*.json")):
        c = json.loads(path.read_text(encoding="utf-8"))
        assert c.get("name"), f"{path}: no name"
        c["doc_id"] = slug(c["name"])
        if c["doc_id"] not in seen:  # the first of two files for the same country
            seen.add(c["doc_id"])
            countries.append(c)
    assert len(countries) == EXPECTED_COUNTRIES, f"expected {EXPECTED_COUNTRIES} countries, found {len(countries)}"
    ids = [c["doc_id"] for c in countries]
    assert len(set(ids)) == len(ids), "two countries with the same slug"
    return countries


def alt_names(c: dict) -> list[str]:
    """Other names a reader would accept: Latin-script official or common names (not 2-3 letter codes)."""
    return [a for a in c.get("altSpellings") or [] if len(a.strip()) > 3 and latin(a) and not a.isupper()]


def capitals_of(c: dict) -> list[str]:
    cap = c.get("capital") or ""
    parts = cap if isinstance(cap, list) else re.split(r"\s+/\s+", cap)  # one file gives a list
    return [p.strip() for p in parts if p.strip()]


def build_rows(countries: list[dict]) -> list[dict]:
    capital_count = collections.Counter(cap for c in countries for cap in capitals_of(c))
    rows = []

    def add(c: dict, kind: str, answers: list[str], **fmt) -> None:
        row_id = f"{c['doc_id']}--{kind}"
        rows.append(
            {
                "id": row_id,
                "question": pick(TEMPLATES[kind], row_id).format(name=c["name"], **fmt),
                "answer": answers,
                "doc_id": c["doc_id"],
                "category": kind,
                "country": c["name"],
            }
        )

    for c in countries:
        caps = capitals_of(c)
        if caps:
            add(c, "capital", spellings(*caps))
        if len(caps) == 1 and capital_count[caps[0]] == 1:
            cap = caps[0]
            if fold(cap).lower() not in fold(c["name"]).lower() and fold(c["name"]).lower() not in fold(cap).lower():
                add(c, "country", spellings(c["name"], *alt_names(c)), capital=cap)
        demonyms = [d.strip() for d in (c.get("demonym") or "").split(",") if d.strip()]
        if demonyms:
            add(c, "demonym", spellings(*demonyms, " or ".join(demonyms), ", ".join(demonyms)))
        currencies = c.get("currencies") or []
        if len(currencies) == 1 and re.fullmatch(r"[A-Z]{3}", currencies[0]):
            add(c, "currency", [currencies[0]])
        codes = c.get("callingCodes") or []
        if len(codes) == 1 and re.fullmatch(r"\d{1,4}", codes[0]):
            add(c, "calling-code", [f"+{codes[0]}", codes[0]])
    rows.sort(key=lambda r: r["id"])
    return rows


def fact_sheet(c: dict, by_alpha3: dict[str, str]) -> str:
    name = c["name"]
    lines = [f"{name}"]
    others = [a for a in alt_names(c) if a != name]
    if others:
        lines.append(f"Also known as: {'; '.join(others)}.")
    if c.get("nativeName") and c["nativeName"] != name:
        lines.append(f"Native name: {c['nativeName']}.")
    if c.get("subregion") or c.get("region"):
        where = ", ".join(x for x in (c.get("subregion"), c.get("region")) if x)
        lines.append(f"{name} is a country or territory in {where}.")
    caps = capitals_of(c)
    if caps:
        lines.append(f"The capital of {name} is {' / '.join(caps)}.")
    if c.get("demonym"):
        lines.append(f"People from {name} are called {c['demonym'].replace(',', ' or ')}.")
    if c.get("currencies"):
        lines.append(f"Currency (ISO 4217 code): {', '.join(c['currencies'])}.")
    if c.get("callingCodes"):
        lines.append(f"International dialling code: {', '.join('+' + x for x in c['callingCodes'])}.")
    if c.get("tld"):
        lines.append(f"Internet top-level domain: {', '.join(t.rstrip('.') for t in c['tld'])}.")
    if c.get("languages"):
        lines.append(f"Languages (ISO 639-1 codes): {', '.join(c['languages'])}.")
    if c.get("population"):
        lines.append(f"Population: about {c['population']:,}.")
    if c.get("area"):
        lines.append(f"Area: {c['area']:,} square kilometres.")
    borders = [by_alpha3.get(b, b) for b in c.get("borders") or []]
    if borders:
        lines.append(f"{name} borders {', '.join(borders)}.")
    provinces = [p for p in c.get("provinces") or [] if isinstance(p, str)]
    if provinces:
        lines.append(f"Its provinces, states or regions include {', '.join(provinces[:40])}.")
    if c.get("timezoneNames"):
        lines.append(f"Time zones: {', '.join(c['timezoneNames'][:10])}.")
    return "\n".join(lines)


def build_corpus(countries: list[dict]) -> list[dict]:
    by_alpha3 = {(c.get("ISO") or {}).get("alpha3"): c["name"] for c in countries}
    return [{"doc_id": c["doc_id"], "title": c["name"], "text": fact_sheet(c, by_alpha3)} for c in countries]


def check(rows: list[dict], corpus: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), "duplicate ids"
    assert len(rows) >= 300, len(rows)
    docs = {d["doc_id"]: d["text"] for d in corpus}
    for r in rows:
        assert r["answer"] and all(a.strip() for a in r["answer"]), r
        assert "{" not in r["question"], r
        assert r["doc_id"] in docs, r
        assert any(a in docs[r["doc_id"]] for a in r["answer"]), r  # the fact sheet holds the answer


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_bytes("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


def main() -> None:
    countries = load_countries(package_dir())
    rows, corpus = build_rows(countries), build_corpus(countries)
    check(rows, corpus)
    write_jsonl(QUESTIONS, rows)
    write_jsonl(CORPUS, corpus)
    kinds = collections.Counter(r["category"] for r in rows)
    print(f"wrote {len(rows)} questions to {QUESTIONS} and {len(corpus)} fact sheets to {CORPUS}")
    print("  ".join(f"{k}={n}" for k, n in sorted(kinds.items())))
    print(f"questions with several acceptable answers: {sum(len(r['answer']) > 1 for r in rows)}")


if __name__ == "__main__":
    main()
