"""The LoRA trainer: data order, learning, resume equivalence, best checkpoint, f/loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from modelfixtures import causal_rows, classifier_rows
from safetensors.torch import load_file

from subsetctl.errors import UserError
from subsetctl.modeling.lora import apply_lora
from subsetctl.modeling.resolve import resolve_model
from subsetctl.modeling.train import (
    TrainConfig,
    batch_order,
    batch_order_array,
    compute_f,
    evaluate_loss,
    kept_start_eval_loss,
    train_lora,
)


def _llama(folder, seed=0, dropout=0.0):
    model, tok, _ = resolve_model(str(folder), "causal-lm")
    return apply_lora(model, r=4, alpha=8, dropout=dropout, seed=seed), tok


def _adapter(out_dir):
    return load_file(str(out_dir / "adapter" / "adapter_model.safetensors"))


def test_batch_order_depends_only_on_n_steps_batch_seed() -> None:
    a = batch_order(10, 7, 4, seed=1)
    assert a == batch_order(10, 7, 4, seed=1)
    assert a != batch_order(10, 7, 4, seed=2)
    assert len(a) == 7 and all(len(b) == 4 for b in a)
    flat = [i for b in a for i in b]
    assert sorted(flat[:10]) == list(range(10))  # each pass is a permutation
    assert sorted(flat[10:20]) == list(range(10))
    with pytest.raises(UserError):
        batch_order(0, 3, 2, 0)


@pytest.mark.parametrize("n, steps, batch", [(1, 3, 4), (3, 5, 8), (32, 15, 8), (296, 30, 16)])
def test_batch_order_is_the_seeded_permutation_stream(n: int, steps: int, batch: int) -> None:
    """The stream, written out plainly: fixed by seed, so runs and simulations agree."""
    rng = np.random.default_rng(4)
    stream: list[int] = []
    while len(stream) < steps * batch:
        stream.extend(int(i) for i in rng.permutation(n))
    assert batch_order(n, steps, batch, seed=4) == [stream[k * batch : (k + 1) * batch] for k in range(steps)]
    np.testing.assert_array_equal(batch_order_array(n, steps, batch, 4), np.array(batch_order(n, steps, batch, 4)))


def test_config_validation_and_epoch_steps() -> None:
    with pytest.raises(UserError, match="steps"):
        TrainConfig().validate()
    with pytest.raises(UserError, match="optimizer"):
        TrainConfig(steps=2, optimizer="lion").validate()  # type: ignore[arg-type]
    cfg = TrainConfig(epochs=2, batch_size=4, grad_accum=2)
    assert cfg.total_steps(20) == 5
    warm = TrainConfig(steps=10, lr=1.0, warmup=4)
    assert warm.lr_at(1) == 0.25 and warm.lr_at(4) == 1.0 and warm.lr_at(9) == 1.0


@pytest.mark.parametrize("objective", ["ce", "surrogate"])
def test_training_reduces_loss(tiny_llama_dir, tmp_path, objective) -> None:
    model, tok = _llama(tiny_llama_dir)
    rows = causal_rows()
    before = evaluate_loss(model, tok, rows, "causal-lm", 32, objective=objective)
    calls = []
    cfg = TrainConfig(steps=12, batch_size=4, lr=1e-2, objective=objective, max_length=32)
    result = train_lora(model, tok, rows, cfg, tmp_path, "causal-lm", progress=lambda *a: calls.append(a))
    after = evaluate_loss(model, tok, rows, "causal-lm", 32, objective=objective)
    assert after < before - 0.05
    assert result.steps == 12 and not result.diverged and result.best_step == 12
    assert [c[0] for c in calls] == list(range(1, 13)) and all(c[1] == 12 for c in calls)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-12"]


def _crash_at(step):
    def progress(s, total, loss, eval_loss):
        if s == step:
            raise KeyboardInterrupt("simulated kill")

    return progress


def _full_run_and_a_crashed_one(tiny_llama_dir, tmp_path, crash_step):
    """A 6-step run to the end in ``full/`` and the same run killed at ``crash_step`` in
    ``crash/`` (checkpoints every 2 steps); returns the full run, the rows and the config."""
    rows = causal_rows()
    # dropout > 0 so the RNG state must be restored too; AdamW state must be restored
    cfg = TrainConfig(steps=6, batch_size=3, lr=5e-3, max_length=32, checkpoint_every=2, seed=5)
    model, tok = _llama(tiny_llama_dir, dropout=0.1)
    full = train_lora(model, tok, rows, cfg, tmp_path / "full", "causal-lm")
    model, tok = _llama(tiny_llama_dir, dropout=0.1)
    with pytest.raises(KeyboardInterrupt):
        train_lora(model, tok, rows, cfg, tmp_path / "crash", "causal-lm", progress=_crash_at(crash_step))
    assert not (tmp_path / "crash" / "adapter").exists()
    return full, rows, cfg


@pytest.mark.parametrize("crash_step", [3, 4])
def test_resume_matches_uninterrupted_run(tiny_llama_dir, tmp_path, crash_step) -> None:
    full, rows, cfg = _full_run_and_a_crashed_one(tiny_llama_dir, tmp_path, crash_step)
    model, tok = _llama(tiny_llama_dir, dropout=0.1)  # a fresh process would start like this
    calls: list[tuple] = []
    resumed = train_lora(model, tok, rows, cfg, tmp_path / "crash", "causal-lm",
                         progress=lambda *args: calls.append(args))
    assert resumed.resumed_from == 4 if crash_step == 4 else resumed.resumed_from == 2
    assert calls[0] == (resumed.resumed_from, cfg.steps, None, None)  # the bar starts where the run resumes
    assert resumed.train_losses == pytest.approx(full.train_losses, abs=1e-6)

    a, b = _adapter(tmp_path / "full"), _adapter(tmp_path / "crash")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    # lora_B starts at zero and training moved it, so the equality above is not trivial
    assert any(float(v.abs().max()) > 1e-4 for k, v in a.items() if "lora_B" in k)


@pytest.mark.parametrize(("damaged", "keep"), [("optimizer.pt", 50), ("optimizer.pt", 0), ("rng.pt", 1),
                                              ("adapter/adapter_model.safetensors", 50), ("trainer_state.json", 3)])
def test_a_damaged_checkpoint_falls_back_and_still_matches(tiny_llama_dir, tmp_path, damaged, keep) -> None:
    """A truncated checkpoint file (power loss, full disk) was an internal error on every
    run; now the run resumes from an earlier checkpoint, or starts over, with a notice."""
    full, rows, cfg = _full_run_and_a_crashed_one(tiny_llama_dir, tmp_path, 5)
    newest = max((tmp_path / "crash" / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    path = newest / damaged
    path.write_bytes(path.read_bytes()[:keep])  # an empty file (power loss) raised EOFError
    model, tok = _llama(tiny_llama_dir, dropout=0.1)
    resumed = train_lora(model, tok, rows, cfg, tmp_path / "crash", "causal-lm")
    assert resumed.resumed_from < int(newest.name[5:])
    assert len(resumed.notices) == 1 and f"checkpoint {newest} is damaged" in resumed.notices[0]
    assert resumed.train_losses == pytest.approx(full.train_losses, abs=1e-6)
    a, b = _adapter(tmp_path / "full"), _adapter(tmp_path / "crash")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_resume_refuses_other_run_and_finished_run_is_idempotent(tiny_llama_dir, tmp_path) -> None:
    rows = causal_rows()
    cfg = TrainConfig(steps=2, batch_size=4, max_length=32)
    model, tok = _llama(tiny_llama_dir)
    first = train_lora(model, tok, rows, cfg, tmp_path, "causal-lm")
    model, tok = _llama(tiny_llama_dir)
    again = train_lora(model, tok, rows, cfg, tmp_path, "causal-lm")
    assert again.resumed_from == 2 and again.train_losses == first.train_losses
    model, tok = _llama(tiny_llama_dir)
    with pytest.raises(UserError, match="different training run"):
        train_lora(model, tok, rows[:5], cfg, tmp_path, "causal-lm")
    model, tok = _llama(tiny_llama_dir)
    fresh = train_lora(model, tok, rows[:5], cfg, tmp_path, "causal-lm", resume=False)
    assert fresh.resumed_from == 0


def test_the_loss_before_training_is_kept_for_the_same_rows_and_evaluation_settings(tiny_llama_dir, tmp_path) -> None:
    """train_lora keeps the caller's loss before training in its checkpoints; it is given back for
    the same validation rows and evaluation settings only, and not by checkpoints without it
    (an older subsetctl's, or a run not given one)."""
    rows = causal_rows()
    train, val = rows[:6], rows[6:]
    cfg = TrainConfig(steps=2, batch_size=3, max_length=32, eval_every=1, eval_objective="surrogate")
    assert kept_start_eval_loss(tmp_path / "with", cfg, val) is None  # no checkpoint yet
    model, tok = _llama(tiny_llama_dir)
    train_lora(model, tok, train, cfg, tmp_path / "with", "causal-lm", eval_examples=val, start_eval_loss=0.6931)
    assert kept_start_eval_loss(tmp_path / "with", cfg, val) == 0.6931
    assert kept_start_eval_loss(tmp_path / "with", cfg, val[1:]) is None
    for other in (TrainConfig(**{**vars(cfg), "max_length": 16}), TrainConfig(**{**vars(cfg), "eval_objective": "ce"}),
                  TrainConfig(**{**vars(cfg), "eval_batch_size": 1})):
        assert kept_start_eval_loss(tmp_path / "with", other, val) is None
    # the training settings are not what the loss before training depends on
    assert kept_start_eval_loss(tmp_path / "with", TrainConfig(**{**vars(cfg), "lr": 0.5}), val) == 0.6931
    (tmp_path / "with" / "checkpoints" / "step-99").mkdir()
    (tmp_path / "with" / "checkpoints" / "step-99" / "trainer_state.json").write_text("[")  # damaged: the one before
    assert kept_start_eval_loss(tmp_path / "with", cfg, val) == 0.6931
    model, tok = _llama(tiny_llama_dir)
    train_lora(model, tok, train, cfg, tmp_path / "without", "causal-lm", eval_examples=val)
    assert kept_start_eval_loss(tmp_path / "without", cfg, val) is None


def test_best_checkpoint_by_eval_loss(tiny_llama_dir, tmp_path) -> None:
    rows = causal_rows()
    train, val = rows[:6], rows[6:]
    # a large SGD step on the surrogate overshoots: the best validation step is not the last
    cfg = TrainConfig(
        steps=8, batch_size=3, lr=3.0, optimizer="sgd", objective="surrogate", max_length=32, eval_every=1
    )
    model, tok = _llama(tiny_llama_dir)
    seen = []
    result = train_lora(
        model,
        tok,
        train,
        cfg,
        tmp_path,
        "causal-lm",
        eval_examples=val,
        progress=lambda s, t, l, e: seen.append(e),
    )
    assert all(e is not None for e in seen)
    losses = result.eval_losses
    finite = {k: v for k, v in losses.items() if math.isfinite(v)}
    assert result.best_step == min(finite, key=finite.get)
    assert result.best_eval_loss == pytest.approx(finite[result.best_step])
    kept = sorted(int(p.name[5:]) for p in (tmp_path / "checkpoints").iterdir())
    assert set(kept) == {result.best_step, max(losses)}
    # the model and the saved adapter hold the best weights
    assert evaluate_loss(model, tok, val, "causal-lm", 32) == pytest.approx(result.best_eval_loss, abs=1e-5)
    state = json.loads((tmp_path / "checkpoints" / f"step-{max(losses)}" / "trainer_state.json").read_text())
    assert state["best_step"] == result.best_step and state["data_position"] == max(losses) * 3


def test_divergence_is_flagged(tiny_llama_dir, tmp_path) -> None:
    rows = causal_rows()
    cfg = TrainConfig(steps=5, batch_size=4, max_length=32)
    model, tok = _llama(tiny_llama_dir)

    def poison(step, total, loss, eval_loss):  # weights blow up after step 2
        if step == 2:
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        p.fill_(float("nan"))

    result = train_lora(model, tok, rows, cfg, tmp_path, "causal-lm", progress=poison)
    assert result.diverged and result.steps == 2 and len(result.train_losses) == 2
    saved = _adapter(tmp_path)  # no checkpoint yet: the starting weights, never NaN ones
    assert all(bool(torch.isfinite(v).all()) for v in saved.values())
    assert all(float(v.abs().max()) == 0.0 for k, v in saved.items() if "lora_B" in k)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_learning_rate_too_large_for_float32_is_a_divergence(tiny_llama_dir, tmp_path, optimizer) -> None:
    """lr=1e38 (the spec takes any finite positive lr): torch refused the first update
    ("value cannot be converted to type float without overflow"), and `run` stopped with an
    internal error instead of meta_init's "diverged, lower meta_init.lr"."""
    model, tok = _llama(tiny_llama_dir)
    cfg = TrainConfig(steps=3, batch_size=4, max_length=32, lr=1e38 if optimizer == "adamw" else 1e300,
                      optimizer=optimizer)
    result = train_lora(model, tok, causal_rows(), cfg, tmp_path, "causal-lm")
    assert result.diverged and result.steps == 0
    saved = _adapter(tmp_path)  # the starting weights
    assert all(float(v.abs().max()) == 0.0 for k, v in saved.items() if "lora_B" in k)


def test_compute_f_matches_surrogate_and_single_token_ce(tiny_llama_dir) -> None:
    model, tok = _llama(tiny_llama_dir)
    rows = causal_rows()
    f = compute_f(model, tok, rows, "causal-lm", 32, batch_size=3)
    f1 = compute_f(model, tok, rows, "causal-lm", 32, batch_size=1)
    assert f.shape == (8,) and np.allclose(f, f1, atol=1e-5)  # batching/padding does not matter
    sur = evaluate_loss(model, tok, rows, "causal-lm", 32, objective="surrogate")
    assert sur == pytest.approx(float(np.mean(np.logaddexp(0, -f))), rel=1e-6)
    ce = evaluate_loss(model, tok, rows, "causal-lm", 32, objective="ce")
    assert ce > 0 and ce != pytest.approx(sur)


def test_a_diverged_models_loss_is_nan_not_taken_for_rows_with_no_token_to_score(tiny_llama_dir) -> None:
    """A model whose weights went NaN (a step that diverged) has a NaN validation loss, which
    train_lora takes for divergence: its rows are not ones with no token to score (left out of
    the mean, and none left: a UserError blaming one-token texts)."""
    model, tok = _llama(tiny_llama_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    assert math.isnan(evaluate_loss(model, tok, causal_rows(), "causal-lm", 32, objective="ce"))


def test_classifier_training_and_f(tiny_bert_dir, tmp_path) -> None:
    model, tok, _ = resolve_model(str(tiny_bert_dir), "classifier", num_labels=2)
    model = apply_lora(model, r=4, kind="classifier")
    rows = classifier_rows()
    before = evaluate_loss(model, tok, rows, "classifier", 16, objective="ce")
    # 2 classes: the gold class's log-odds is the logit margin, so softplus(-f) equals CE
    sur = evaluate_loss(model, tok, rows, "classifier", 16, objective="surrogate")
    assert sur == pytest.approx(before, rel=1e-5)
    cfg = TrainConfig(steps=15, batch_size=4, lr=2e-2, max_length=16)
    train_lora(model, tok, rows, cfg, tmp_path, "classifier")
    assert evaluate_loss(model, tok, rows, "classifier", 16, objective="ce") < before - 0.05
    bad = [dict(rows[0], label=-1)]
    with pytest.raises(UserError, match="label"):
        compute_f(model, tok, bad, "classifier", 16)


def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(tiny_llama_dir, tmp_path) -> None:
    import shutil

    full, rows, cfg = _full_run_and_a_crashed_one(tiny_llama_dir, tmp_path, 3)
    ckpts = tmp_path / "crash" / "checkpoints"
    shutil.copytree(ckpts / "step-2", tmp_path / "step-2")  # pruned once step 4 is written: keep a copy
    model, tok = _llama(tiny_llama_dir, dropout=0.1)
    with pytest.raises(KeyboardInterrupt):
        train_lora(model, tok, rows, cfg, tmp_path / "crash", "causal-lm", progress=_crash_at(5))
    shutil.copytree(tmp_path / "step-2", ckpts / "step-2")
    (ckpts / "step-4" / "optimizer.pt").write_bytes(b"")
    model, tok = _llama(tiny_llama_dir, dropout=0.1)
    resumed = train_lora(model, tok, rows, cfg, tmp_path / "crash", "causal-lm")
    assert resumed.resumed_from == 2 and "step-4 is damaged" in resumed.notices[0]
    assert resumed.train_losses == pytest.approx(full.train_losses, abs=1e-6)


def test_what_max_length_cuts_is_said_by_source(tiny_llama_dir, tmp_path) -> None:
    """The only notice was the gradients stage's "their prompts were cut from the left",
    also when the answer itself was cut; meta_init and the fine-tunes said nothing."""
    rows = causal_rows(source="short") + [
        {"source": "long_prompt", "prompt": "x" * 80, "response": "1", "label": -1, "metadata": "{}", "row": 0},
        {"source": "long_answer", "prompt": "q", "response": "y" * 40, "label": -1, "metadata": "{}", "row": 0},
    ]
    model, tok = _llama(tiny_llama_dir)
    steps = -(-len(rows) // 2)  # batches of 2 that draw every row once
    config = TrainConfig(steps=steps, batch_size=2, max_length=32)
    result = train_lora(model, tok, rows, config, tmp_path, "causal-lm")
    notice = result.truncation
    assert notice.startswith(f"model.max_length=32 tokens cut 2 of {len(rows)} examples the {steps} training steps drew")
    assert "prompt was cut from the left (long_prompt: 1)" in notice
    assert "the answer itself was cut" in notice and "(long_answer: 1)" in notice and "short" not in notice
    model, tok = _llama(tiny_llama_dir)
    fits = train_lora(model, tok, causal_rows(), TrainConfig(steps=1, batch_size=2, max_length=32), tmp_path / "b",
                      "causal-lm")
    assert fits.truncation is None


def test_what_max_length_cuts_of_a_classifiers_text_is_said(tiny_bert_dir, tmp_path) -> None:
    """Only causal-LM cuts were counted: every classifier text cut at model.max_length=8
    passed without a word (gradients' summary said truncated: 0)."""
    from subsetctl.modeling.encoding import TruncationCounts

    model, tok, _ = resolve_model(str(tiny_bert_dir), "classifier", num_labels=2)
    model = apply_lora(model, r=4, kind="classifier")
    long_row = dict(classifier_rows(1)[0], source="long", prompt="good movie " * 20)
    rows = [*classifier_rows(3), long_row]
    result = train_lora(model, tok, rows, TrainConfig(steps=1, batch_size=4, max_length=16), tmp_path, "classifier")
    assert result.truncation == ("model.max_length=16 tokens cut 1 of 4 examples the 1 training steps drew: in 1 "
                                 "the text was cut at its end (long: 1). Raise model.max_length if the cut parts "
                                 "matter.")
    counts = TruncationCounts()
    counts.add_classifier(tok, rows, 64)
    assert counts.cut == 0 and counts.notice(64) is None


def test_training_tokenizes_only_the_rows_its_batches_draw(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    """Meta-init's few steps over a million source rows tokenized every row first (24 GB)."""
    from subsetctl.modeling import train

    rows = causal_rows() * 20
    model, tok = _llama(tiny_llama_dir)
    config = TrainConfig(steps=2, batch_size=2, max_length=32, seed=3)
    tokenized: list[int] = []
    real_encode = train.encode_rows
    monkeypatch.setattr(train, "encode_rows", lambda t, r, *a: tokenized.append(len(r)) or real_encode(t, r, *a))
    lazy = train_lora(model, tok, rows, config, tmp_path / "lazy", "causal-lm")
    assert tokenized == [4]  # 2 steps x 2 rows, of 20 x len(ARITH)
    assert len(lazy.train_losses) == 2 and all(math.isfinite(x) for x in lazy.train_losses)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_classifier_trains_its_head(tiny_bert_dir, tmp_path, dtype) -> None:
    """model.dtype float16 with a classifier: the head (peft modules_to_save) stayed float16,
    AdamW's second moments underflowed and the first step made it NaN (meta_init diverged)."""
    model, tok, _ = resolve_model(str(tiny_bert_dir), "classifier", dtype=dtype, num_labels=2)
    model = apply_lora(model, r=2, alpha=4, kind="classifier")
    head = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert head and all(p.dtype == torch.float32 for p in head)
    before = [p.detach().clone() for p in head]
    cfg = TrainConfig(steps=3, batch_size=4, lr=1e-2, max_length=32)
    result = train_lora(model, tok, classifier_rows(), cfg, tmp_path, "classifier")
    assert not result.diverged
    assert all(torch.isfinite(p).all() and not torch.equal(p, b) for p, b in zip(head, before))


def test_interrupt_while_the_chosen_adapter_is_copied_leaves_no_temporary_folder(
        tiny_llama_dir, tmp_path, monkeypatch) -> None:
    """Ctrl-C (or SIGTERM) while the best checkpoint's adapter is copied into place
    deletes the half-copied temporary folder, as every other atomic write does (it was
    left in the stage folder until the next run)."""
    from subsetctl.modeling import train

    real = train.replace_dir

    def interrupted(src, dst, *args):
        if dst == tmp_path / "adapter":  # (checkpoints are written as before)
            raise KeyboardInterrupt
        real(src, dst, *args)

    monkeypatch.setattr(train, "replace_dir", interrupted)
    model, tok = _llama(tiny_llama_dir)
    cfg = TrainConfig(steps=2, batch_size=4, max_length=32, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        train_lora(model, tok, causal_rows(), cfg, tmp_path, "causal-lm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]


def test_a_checkpoint_of_other_chat_contexts_is_another_run() -> None:
    """A row's chat context is rendered before its prompt (training sees it), so rows
    whose contexts differ are other examples: checkpoints of them are not resumed. Rows
    without one fingerprint as before."""
    from subsetctl.modeling.train import _run_fingerprint

    cfg = TrainConfig(steps=2, batch_size=4, max_length=32)
    row = {"source": "s", "row": 0, "prompt": "q", "response": "a", "label": -1, "metadata": "{}"}

    def with_context(text: str) -> dict:
        return {**row, "metadata": json.dumps({"chat_context": [{"role": "user", "content": text}]})}

    assert _run_fingerprint(cfg, [with_context("one")], None, "causal-lm") != \
        _run_fingerprint(cfg, [with_context("two")], None, "causal-lm")
    assert _run_fingerprint(cfg, [with_context("one")], None, "causal-lm") != _run_fingerprint(cfg, [row], None,
                                                                                             "causal-lm")
    assert _run_fingerprint(cfg, [row], None, "causal-lm") == \
        _run_fingerprint(cfg, [{**row, "metadata": '{"id": 3}'}], None, "causal-lm")


@pytest.mark.parametrize("objective", ["ce", "surrogate"])
def test_rows_with_no_token_to_score_are_left_out_of_a_training_step(tiny_llama_dir, objective) -> None:
    """A text of one token with no BOS before it and no EOS after it has nothing to learn:
    in a step's mean it counted as a loss of 0 (or log 2, the surrogate's), which moves
    nothing and shrank the update of the rows beside it. The step is the other rows'."""
    from subsetctl.modeling.encoding import encode_rows
    from subsetctl.modeling.train import _optimizer_step, _trainable

    one = [{"prompt": "", "response": "a", "source": "one", "row": i, "metadata": {"whole_text": True}}
           for i in range(3)]
    cfg = TrainConfig(steps=1, batch_size=7, lr=0.5, optimizer="sgd", objective=objective, max_length=32)
    steps, weights = [], []
    for rows in (causal_rows()[:4], causal_rows()[:4] + one):
        model, tok = _llama(tiny_llama_dir)
        tok.eos_token = None
        params = _trainable(model)
        optimizer = torch.optim.SGD(params, lr=cfg.lr)
        encoded = encode_rows(tok, rows, "causal-lm", 32)
        steps.append(_optimizer_step(model, tok, optimizer, params, encoded, cfg, "causal-lm", torch.device("cpu")))
        weights.append([p.detach().clone() for p in params])
    assert steps[1] == pytest.approx(steps[0], rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(*weights))
