"""Training workers (harness.parts.answer_loss): a training step's rows split over two threads, each with one torch
thread, their gradients added in a fixed order and handed to the trainer's own backward()."""

from __future__ import annotations

import threading

import pytest

from harness.parts import answer_loss
from harness.systems import make_system
from tests.conftest import write_tiny_task
from tests.test_finetune import make_ctx


@pytest.fixture
def two_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["lora", "dora"])
def tiny_lora(tiny_model_dir, request):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM", use_dora=request.param == "dora"
    )
    model = get_peft_model(base, config)
    return model, base.model, base.get_output_embeddings()


def padded_rows(lengths=(12, 7, 9, 5, 10)):
    """Right-padded rows as trl's collator makes them, the loss on each row's last two tokens."""
    import torch

    g = torch.Generator().manual_seed(1)
    width = max(lengths)
    ids = torch.randint(3, 60, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    labels = torch.full_like(ids, -100)
    for r, n in enumerate(lengths):
        labels[r, n - 2 : n] = ids[r, n - 2 : n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def params_of(model):
    return [p for p in model.parameters() if p.requires_grad]


def one_thread_loss_and_grads(model, backbone, head, inputs):
    import contextlib

    model.zero_grad()
    loss = answer_loss.loss_sum(backbone, head, inputs, contextlib.nullcontext) / answer_loss.answer_tokens(
        inputs["labels"]
    )
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params_of(model)]


def workers_loss_and_grads(model, backbone, head, inputs, scale=1.0):
    import contextlib

    model.zero_grad()
    denominator = answer_loss.answer_tokens(inputs["labels"])
    loss = answer_loss.loss_on_workers(
        backbone, head, inputs, denominator, contextlib.nullcontext, params_of(model), 2
    )
    (loss * scale).backward()
    return loss.detach(), [p.grad.clone() for p in params_of(model)]


def test_rows_split_into_consecutive_groups_each_cut_to_its_longest_row():
    inputs = padded_rows((12, 7, 9, 5, 10))
    first, second = answer_loss.split_rows(inputs, 2)
    assert first["input_ids"].shape == (3, 12) and second["input_ids"].shape == (2, 10)
    for key in ("input_ids", "attention_mask", "labels"):
        assert (first[key] == inputs[key][:3, :12]).all() and (second[key] == inputs[key][3:, :10]).all()
    assert sum(int((p["labels"] != -100).sum()) for p in (first, second)) == int((inputs["labels"] != -100).sum())


def test_two_workers_give_the_one_thread_loss_and_its_gradients(tiny_lora, two_threads):
    import torch

    model, backbone, head = tiny_lora
    inputs = padded_rows()
    seen, forward, both = [], backbone.forward, threading.Barrier(2, timeout=30)

    def spy(*args, **kwargs):
        if threading.current_thread().name.startswith("harness-worker"):
            both.wait()  # passed only when the two parts are in their forward passes at once
        seen.append((threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled()))
        return forward(*args, **kwargs)

    backbone.forward = spy
    loss, grads = one_thread_loss_and_grads(model, backbone, head, inputs)
    seen.clear()
    split_loss, split_grads = workers_loss_and_grads(model, backbone, head, inputs)
    assert sorted(seen) == [("harness-worker-0", 1, True), ("harness-worker-1", 1, True)]
    torch.testing.assert_close(split_loss, loss, rtol=1e-6, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads)
    for a, b in zip(split_grads, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert torch.get_num_threads() == 2  # the caller's count again


def test_the_trainers_scale_on_the_loss_scales_the_workers_gradients_and_they_add_to_earlier_ones(
    tiny_lora, two_threads
):
    """Gradient accumulation divides the loss and adds micro-batches' gradients: both reach the split step."""
    import contextlib

    import torch

    model, backbone, head = tiny_lora
    inputs = padded_rows()
    _, grads = workers_loss_and_grads(model, backbone, head, inputs)
    _, quarter = workers_loss_and_grads(model, backbone, head, inputs, scale=0.25)
    for a, b in zip(quarter, grads, strict=True):
        torch.testing.assert_close(a, b * 0.25)
    denominator = answer_loss.answer_tokens(inputs["labels"])
    for _ in range(2):  # no zero_grad after the quarter-scaled step: two whole steps accumulate on it
        answer_loss.loss_on_workers(
            backbone, head, inputs, denominator, contextlib.nullcontext, params_of(model), 2
        ).backward()
    for p, g in zip(params_of(model), grads, strict=True):
        torch.testing.assert_close(p.grad, g * 2.25, rtol=1e-5, atol=1e-7)


def test_a_step_on_two_workers_is_the_same_from_one_run_to_the_next(tiny_lora, two_threads):
    import torch

    model, backbone, head = tiny_lora
    inputs = padded_rows()
    first = workers_loss_and_grads(model, backbone, head, inputs)
    for _ in range(3):
        again = workers_loss_and_grads(model, backbone, head, inputs)
        assert torch.equal(again[0], first[0])
        assert all(torch.equal(a, b) for a, b in zip(again[1], first[1], strict=True))


def test_without_gradients_the_workers_add_their_losses_only(tiny_lora, two_threads):
    """A validation pass runs under no_grad: the parts' losses, summed, and nothing for backward()."""
    import contextlib

    import torch

    model, backbone, head = tiny_lora
    inputs = padded_rows()
    loss, _ = one_thread_loss_and_grads(model, backbone, head, inputs)
    with torch.no_grad():
        split = answer_loss.loss_on_workers(
            backbone, head, inputs, answer_loss.answer_tokens(inputs["labels"]), contextlib.nullcontext, [], 2
        )
    assert not split.requires_grad
    torch.testing.assert_close(split, loss, rtol=1e-6, atol=1e-7)


def test_an_error_in_a_worker_reaches_the_trainer(tiny_lora, two_threads):
    model, backbone, head = tiny_lora
    forward = backbone.forward

    def failing(*args, **kwargs):
        if kwargs["input_ids"].shape[0] == 2:  # the second part's rows (5 rows: 3 and 2)
            raise RuntimeError("out of memory in the second part")
        return forward(*args, **kwargs)

    backbone.forward = failing
    with pytest.raises(RuntimeError, match="second part"):
        workers_loss_and_grads(model, backbone, head, padded_rows())


def test_lora_trains_on_two_workers_records_it_and_keys_it(tmp_path, tiny_model_dir, two_threads, monkeypatch):
    import torch

    curves, keys, split = {}, {}, []
    plain = answer_loss.loss_on_workers
    monkeypatch.setattr(answer_loss, "loss_on_workers", lambda *a, **k: split.append(a[-1]) or plain(*a, **k))
    for workers in (1, 2):
        split.clear()
        task = write_tiny_task(tmp_path / f"t{workers}", tiny_model_dir, finetune={"workers": workers})
        adapter = make_system("lora", make_ctx(task, tmp_path / f"w{workers}")).adapter
        assert adapter.workers == workers
        keys[workers] = adapter.key
        training = adapter.build().training
        assert training["workers"] == workers
        assert split.count(2) == (len(split) if workers == 2 else 0) and (workers == 1 or split)  # steps, validation
        curves[workers] = [p["train_loss"] for p in training["loss_curve"] if p["train_loss"] is not None]
    assert keys[1] != keys[2]
    assert curves[1] and len(curves[1]) == len(curves[2])
    torch.testing.assert_close(torch.tensor(curves[2]), torch.tensor(curves[1]), rtol=1e-3, atol=1e-4)
    auto = write_tiny_task(tmp_path / "auto", tiny_model_dir, finetune={"workers": "auto"})
    assert make_system("lora", make_ctx(auto, tmp_path / "auto")).adapter.key == keys[2]  # resolved, not as written
    torch.set_num_threads(1)
    assert make_system("lora", make_ctx(auto, tmp_path / "one")).adapter.key == keys[1]


@pytest.mark.parametrize(
    "system, finetune, ctx_kw, why",
    [
        ("lora", {"dropout": 0.05}, {}, "dropout"),
        ("lora", {"gradient_checkpointing": True}, {}, "checkpointing"),
        ("lora", {}, {"launcher": "accelerate"}, "process"),
        ("dpo", {}, {}, "preference"),
    ],
)
def test_one_worker_where_two_threads_would_not_give_a_fixed_step(
    tmp_path, tiny_model_dir, two_threads, system, finetune, ctx_kw, why
):
    task = write_tiny_task(tmp_path / "t", tiny_model_dir, finetune={"workers": 2, **finetune})
    adapter = make_system(system, make_ctx(task, tmp_path, **ctx_kw)).adapter
    assert why in adapter.why_one_worker() and adapter.workers == 1


def test_the_probe_times_the_split_step(tiny_lora, two_threads):
    """What the estimate's training rate comes from: the step the trainer takes, on its workers."""
    import torch

    model, backbone, head = tiny_lora
    inputs = padded_rows()
    names, forward = set(), backbone.forward

    def spy(*args, **kwargs):
        names.add(threading.current_thread().name)
        return forward(*args, **kwargs)

    backbone.forward = spy
    opt = torch.optim.AdamW(params_of(model), lr=1e-3)
    before = [p.detach().clone() for p in params_of(model)]
    answer_loss.step(backbone, head, opt, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], False, 2)
    assert names and names <= {"harness-worker-0", "harness-worker-1"}  # the parts ran on the workers
    assert any(not torch.equal(a, p) for a, p in zip(before, params_of(model), strict=True))
