"""Sweeps: one run over a grid of settings (`harness sweep TASK --set finetune.r=4,16 --set rag.k=1,3`).

`grid` turns `--set` options into variants (a system under a readable name, e.g. `lora[r=4]`, with its own
settings), checked against the task schema before anything loads; `executors` runs the variants one after
another in this process or as tasks on a Ray cluster. The variants are ordinary systems of one run: same
questions, same statistics, one run directory and one report, whose Pareto front is `harness.report.pareto`.
"""
