"""The schema's base, and the `data:` section of a task file: where questions and documents come from and
how they are split. (harness.spec holds the rest of the task schema and loads task files.)"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    # use_enum_values: `answer_format` is checked against AnswerFormat but kept as the plain string, so it prints,
    # dumps and hashes exactly as the file wrote it.
    # allow_inf_nan=False: `.inf` or `.nan` (YAML floats) passes `gt=0` but stalls or breaks a run.
    model_config = ConfigDict(extra="forbid", validate_default=True, use_enum_values=True, allow_inf_nan=False)
    example: ClassVar[str] = ""  # a YAML snippet for docs/tasks.md (validated by the docs test)


class FieldMap(Strict):
    """Which field of each row holds what. Optional fields are used when a row has them."""

    example: ClassVar[str] = """\
fields: {question: prompt, answer: gold, choices: [A, B, C, D], answer_is: letter, doc_id: source}"""

    id: str | None = Field(
        "id", description="Field holding a unique question id; rows without it are numbered by their line."
    )
    question: str = Field("question", description="Field holding the question text.")
    answer: str = Field(
        "answer", description="Field holding the gold answer: a string, or (free-text) a list of acceptable answers."
    )
    choices: str | list[str] | None = Field(
        "choices",
        description=(
            "Multiple-choice options: one field holding a list, or a list of fields (one option each, e.g. CSV "
            "columns `[A, B, C, D]`). Yes/no tasks always use Yes/No."
        ),
    )
    answer_is: Literal["text", "index", "letter"] = Field(
        "text",
        description=(
            "Multiple-choice: how the answer names the gold option: its `text`, its 0-based `index`, or its "
            "`letter` (A, B, C...)."
        ),
    )
    separator: str | None = Field(
        None,
        description=(
            "Split text cells (CSV answers or choices) on this string, e.g. `|`. A cell holding a JSON list is "
            "always read as a list."
        ),
    )
    doc_id: str | None = Field(
        "doc_id",
        description=(
            "Field holding the id of the corpus document that answers the question (for retrieval metrics and "
            "by-document splits)."
        ),
    )
    category: str | None = Field(
        "category", description="Field holding a category label (for the per-category baseline and breakdowns)."
    )
    split: str | None = Field(
        "split",
        description=(
            "Field naming each row's split (`train`, `dev`/`validation`, `test`); read only with `data.split.by: "
            "given`."
        ),
    )


class HubSource(Strict):
    """A dataset on a `datasets` hub. Offline (the default) this fails at once with a clear message."""

    example: ClassVar[str] = """\
hub: {name: org/dataset, config: default, split: train}"""

    name: str = Field(
        ...,
        description=(
            "A `datasets` hub name, e.g. `org/dataset`. Needs a hub (HF_HUB_OFFLINE=0); offline it fails with a "
            "clear error."
        ),
    )
    config: str | None = Field(None, description="The dataset configuration name.")
    split: str = Field(
        "train",
        description="Which split of the hub dataset to read (the harness makes its own train/dev/test from it).",
    )


class QuestionSource(Strict):
    """Where the questions and gold answers come from: one local file, a file inside a package, or a hub dataset."""

    example: ClassVar[str] = """\
questions:
  path: my-domain/questions.csv
  fields: {question: q, answer: a}"""

    path: str | None = Field(
        None, description="A JSONL, CSV or Parquet file (or a JSON array), relative to the task file's folder."
    )
    package: str | None = Field(None, description="Read `path` from inside this installed Python package instead.")
    hub: HubSource | None = Field(None, description="Read from a `datasets` hub spec instead of a file.")
    format: Literal["auto", "jsonl", "json", "csv", "parquet"] = Field(
        "auto", description="File format; `auto` goes by the extension (.jsonl, .json, .csv, .parquet)."
    )
    fields: FieldMap = Field(
        default_factory=FieldMap, description="Which field holds what (see `data.questions.fields`)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> QuestionSource:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` or `hub`")
        if self.package and not self.path:
            raise ValueError("`package` needs a `path` inside the package")
        return self


class CorpusSource(Strict):
    """Documents that RAG indexes: a folder of .txt/.md/.html files, or a JSONL file with one document a line."""

    example: ClassVar[str] = """\
corpus: {package: pychoosealicense, path: _licenses, glob: "*.txt", strip_front_matter: true}"""

    path: str = Field(
        ...,
        description=(
            "A folder of .txt/.md/.html documents, or a JSONL file with one document a line; relative to the task "
            "file, or to `package`."
        ),
    )
    package: str | None = Field(None, description="Read `path` from inside this installed Python package.")
    glob: str = Field(
        "*",
        description=(
            "Which files of the folder to read (e.g. `*.txt`, or `**/*.md` for subfolders). A document's id is its "
            "path below the folder, without the extension."
        ),
    )
    exclude: list[str] = Field(default_factory=list, description="File names to leave out (e.g. `__init__.py`).")
    strip_front_matter: bool = Field(
        False, description="Drop a leading `---` YAML front-matter block from each document (metadata, not text)."
    )
    text_field: str = Field("text", description="JSONL corpus: the field holding the document text.")
    id_field: str = Field("doc_id", description="JSONL corpus: the field holding the document id.")
    title_field: str | None = Field("title", description="JSONL corpus: the field holding the title, if any.")


class SplitSpec(Strict):
    """How train / dev / test are made. Ratio splits are seeded, so every run sees the same test questions."""

    example: ClassVar[str] = """\
split: {by: doc, test_fraction: 0.2, dev_fraction: 0.1, seed: 0}"""

    by: Literal["doc", "question", "given"] = Field(
        "doc",
        description=(
            "`doc` holds out whole documents (no test question about a document seen in training); `question` "
            "splits questions at random; `given` uses each row's split field."
        ),
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of documents (or questions) held out for testing."
    )
    dev_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share held out of training for validation loss and calibration. With `doc` and `question` "
        "the dev documents (or questions) are chosen, after the test ones, so that dev's mix of category and "
        "answer matches what stays in training.",
    )
    seed: int = Field(0, description="Seed of the split.")

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        if self.test_fraction + self.dev_fraction >= 1:
            raise ValueError(
                f"test_fraction + dev_fraction must be below 1 (got {self.test_fraction} + {self.dev_fraction})"
            )
        return self


class DataSpec(Strict):
    """Questions, corpus and split."""

    example: ClassVar[str] = """\
data:
  questions: {path: my-domain/questions.jsonl}
  corpus: {path: my-domain/docs, glob: "*.md"}
  split: {by: doc, test_fraction: 0.2}"""

    questions: QuestionSource = Field(..., description="Where the questions and gold answers come from.")
    corpus: CorpusSource | None = Field(
        None, description="Documents that RAG indexes. Without it, RAG indexes the training question-answer pairs."
    )
    split: SplitSpec = Field(default_factory=SplitSpec, description="How train / dev / test are made.")
