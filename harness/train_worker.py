"""Entry point run by `accelerate launch` (one process per device): build one adapter, then exit.

python -m harness.train_worker JOB.json

The worker rebuilds the system the job names with the run's task, model, seed and folders; the system's
AdapterTrainer finds the same cache key, trains in every process and writes from rank 0 only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from harness import models
from harness.context import Reporter, RunContext
from harness.data import load_task_data
from harness.spec import load_spec
from harness.systems import make_system


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    os.environ["HARNESS_HOME"] = job["harness_home"]
    models.set_offline_defaults()  # before the first import of torch or transformers, which read it
    update = {"model": job["model"], "seed": job["seed"], "device": job.get("device", "auto")}
    spec = load_spec(Path(job["task_file"])).model_copy(update=update)
    data = load_task_data(spec)
    ref = models.resolve_model(spec.model)
    ctx = RunContext(
        spec,
        data,
        ref,
        Reporter(lambda line: print(line, flush=True)),
        indices_dir=Path(job["indices_dir"]),
        launcher="accelerate-process",  # trains here, in one of the processes `accelerate launch` started
    )
    make_system(job["system"], ctx).build()


if __name__ == "__main__":
    main(sys.argv[1])
