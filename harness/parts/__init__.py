"""Parts that systems are composed from, each built once per run and handed to every system that needs it.

- prompt_builder.PromptBuilder: the only renderer of prompts (plain, with passages, with solved examples).
- retriever.Retriever: the run's index (build or load) and passages for a question within a token budget.
- example_selector.ExampleSelector: which solved training questions go before a question (few-shot).
- adapter_trainer.AdapterTrainer with a recipe from trainers (SFT, corpus, DPO, ORPO): one trained adapter.
- outputs: Prompts and BuildInfo, what parts and systems hand back to the run.

The run context (harness.context.RunContext) owns one of each: `ctx.prompts`, `ctx.retriever()`,
`ctx.example_selector()`. No part imports a system module: data flows from parts to systems, never back
(tests/test_imports.py checks it).
"""
