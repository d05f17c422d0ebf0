"""Score systems on the *dev* split, to justify a design choice without looking at the test split.

    python bench/dev_check.py legal-qa --systems lora [--variant NAME] [--reports-dir DIR]

Runs `harness run` on a copy of the task whose test questions are its dev questions (calibration off: the dev
questions are what is scored, so they cannot also fit a threshold). The adapters and indices are the ones a
plain run builds or reuses (their cache keys hold the train and dev splits, not the test split), so point
HARNESS_HOME at a home that holds them, or let them train. Prints each system's raw accuracy on dev.

Variants (each changes one design choice for this process only; their cache keys do not see the change, so give
a variant that trains its own, fresh HARNESS_HOME):
  group_by_length   SFT batches grouped by length (trl/transformers `group_by_length`) instead of random batches
  rag_budget        rag+lora's evaluation prompts get rag's prompt budget instead of the budget it trained with
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def group_by_length() -> None:
    from harness.parts import trainers

    plain = trainers.sft_config

    def grouped(*args, **kwargs):
        config = plain(*args, **kwargs)
        config.train_sampling_strategy = "group_by_length"  # transformers 5's name for group_by_length=True
        return config

    trainers.sft_config = grouped


def rag_budget() -> None:
    from harness.systems.rag_finetune import RagFinetuneSystem

    RagFinetuneSystem.prompts = lambda self, questions: self.ctx.retriever().retrieve(questions)


VARIANTS = {"group_by_length": group_by_length, "rag_budget": rag_budget}


def dev_as_test() -> None:
    """Every run in this process scores the dev questions as its test split."""
    from harness import data, run

    plain = data.load_task_data

    def swapped(spec):
        d = plain(spec)
        d.test = list(d.dev)
        return d

    run.load_task_data = swapped


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("--systems", required=True)
    ap.add_argument("--variant", choices=sorted(VARIANTS))
    ap.add_argument("--reports-dir", default=None)
    ap.add_argument("--indices-dir", default="indices")
    args = ap.parse_args(argv)
    # The start-of-run estimate probes in a child process, which would not see the patches below.
    os.environ["HARNESS_ESTIMATE"] = "off"
    from harness.tasks import find_task

    source = find_task(args.task)
    folder = Path(tempfile.mkdtemp(prefix="dev-check-"))
    # Same name and settings (so the same cache keys), calibration off; paths stay relative to the task's folder.
    task = source.parent / f".dev-check-{folder.name}.yaml"
    task.write_text(f"include: {source.name}\nevaluation: {{calibration: none}}\n")
    try:
        dev_as_test()
        if args.variant:
            VARIANTS[args.variant]()
        from typer.testing import CliRunner

        from harness.cli import app

        reports = Path(args.reports_dir or folder / "reports")
        cmd = ["run", str(task), "--systems", args.systems, "--reevaluate", "--reports-dir", str(reports)]
        cmd += ["--indices-dir", args.indices_dir, "--latency-sample", "1"]
        result = CliRunner().invoke(app, cmd, catch_exceptions=False)
        print(result.output[-3000:])
        [results_file] = (p for p in reports.glob("*/*/results.json") if not p.parent.is_symlink())
        res = json.loads(results_file.read_text())
        out = {
            "variant": args.variant or "as built",
            "n_dev": res["n_test"],
            "accuracy": {n: (s.get("metrics") or {}).get("accuracy") for n, s in res["systems"].items()},
            "errors": {n: s["error"] for n, s in res["systems"].items() if s.get("error")},
            "run_dir": str(results_file.parent),
        }
        return out
    finally:
        task.unlink(missing_ok=True)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
