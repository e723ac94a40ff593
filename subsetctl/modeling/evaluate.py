"""Held-out evaluation of a fine-tuned model: test losses plus a task metric.

Causal LMs generate greedily (left-padded batches, bounded by ``max_new_tokens``) and
are scored per row: reasoning-gym rows (``metadata`` holds ``rg_task``) with the task's
own ``score_answer``, other rows by normalized exact match. Classifiers report accuracy
and macro-F1. Per-example predictions come back so reports can show them.
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from subsetctl.errors import UserError
from subsetctl.modeling.answers import (
    exact_match,
    macro_f1,
    shortest_matching_forms,
)
from subsetctl.modeling.encoding import (
    TruncationCounts,
    context_kept_whole,
    cut_within_template,
    encode_rows,
    pad_id,
    render_prompt,
    row_context,
    template_preamble_tokens,
    tokenize_responses,
)
from subsetctl.modeling.modes import in_eval_mode
from subsetctl.modeling.outputs import surrogate_loss
from subsetctl.modeling.train import per_example_outputs
from subsetctl.row_metadata import is_reasoning_gym_row, row_metadata

METRICS: tuple[str, ...] = ("auto", "exact_match", "reasoning_gym", "accuracy")
MIN_TEST_EXAMPLES = 10



# --------------------------------------------------------------------------- reasoning-gym


#: the most a shift or a power in a scorer's ``eval`` may take as its right operand (the
#: left of a power must be a number too): 1 << 10**9 or 9**9**9 would never finish
_MAX_EXPONENT = 1024
#: held while a scorer's module has :func:`_eval_data_only` as its ``eval``
_SCORER_EVAL = threading.Lock()


def _numeric(node: ast.AST) -> bool:
    """Whether ``node`` is arithmetic on numbers alone (``0x3a << 2``, ``-(5 // 2)``)."""
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float, complex)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow | ast.LShift):
            right = node.right
            small = isinstance(right, ast.Constant) and type(right.value) is int and abs(right.value) <= _MAX_EXPONENT
            return small and (_numeric(node.left) if isinstance(node.op, ast.LShift)
                              else isinstance(node.left, ast.Constant) and _numeric(node.left))
        return _numeric(node.left) and _numeric(node.right)
    return False


def _data_only(node: ast.AST) -> bool:
    """Whether ``node`` is a Python literal (a list of characters, a matrix, a board) or
    arithmetic on numbers: nothing that names, calls or looks up anything."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_data_only(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _data_only(k) for k in node.keys) and all(_data_only(v) for v in node.values)
    return _numeric(node)


def _eval_data_only(source: Any, *_: Any) -> Any:
    """``eval`` for reasoning-gym's scorers: several ``eval`` the model's answer (string_insertion,
    spiral_matrix, n_queens, binary_matrix: "is it a Python list?"), so a generated
    ``__import__('os').system(...)`` ran in the evaluate stage. Literals and arithmetic on
    numbers, what those scorers and bitwise_arithmetic's check evaluate, are evaluated;
    anything else raises ValueError, which the scorers take as a wrong answer."""
    tree = ast.parse(source.strip() if isinstance(source, str) else source, mode="eval")
    if not _data_only(tree.body):
        raise ValueError("not a Python literal or arithmetic on numbers: not evaluated")
    return eval(compile(tree, "<answer>", "eval"), {"__builtins__": {}}, {})  # (data only: checked above)


@contextlib.contextmanager
def _answers_not_run(scorer: Any) -> Iterator[None]:
    """While the block runs, the modules of ``scorer``'s package (reasoning-gym: a composite
    task scores with other tasks' modules) find :func:`_eval_data_only` when they call
    ``eval`` (a module's own name comes before the builtin one); their ``eval`` as it was
    afterwards. One scorer at a time (threads)."""
    package = type(scorer).__module__.partition(".")[0]
    modules = [m for name, m in list(sys.modules.items())
               if m is not None and (name == package or name.startswith(f"{package}."))]
    missing = object()
    with _SCORER_EVAL:
        before = [(m, vars(m).get("eval", missing)) for m in modules]
        for module in modules:
            module.eval = _eval_data_only  # type: ignore[attr-defined]
        try:
            yield
        finally:
            for module, was in before:
                if was is missing:
                    del module.eval  # type: ignore[attr-defined]
                else:
                    module.eval = was  # type: ignore[attr-defined]


class ReasoningGymScorer:
    """Scores answers with reasoning-gym's per-task ``score_answer``; one dataset object
    (the scorer) is built per task and generator config, and reused. The config matters:
    some tasks' ``score_answer`` reads it (decimal_arithmetic's tolerance follows its
    number of decimal places), so a scorer with the default config misjudged answers."""

    def __init__(self) -> None:
        self._by_task: dict[str, Any] = {}

    def _dataset(self, task: str, config: dict[str, Any] | None = None) -> Any:
        key = f"{task}|{json.dumps(config or {}, sort_keys=True, default=str)}"
        if key not in self._by_task:
            from subsetctl.data.loaders.reasoning_gym import import_reasoning_gym

            reasoning_gym = import_reasoning_gym()
            try:
                self._by_task[key] = reasoning_gym.create_dataset(task, size=1, seed=0, **(config or {}))
            except Exception as exc:
                raise UserError(
                    f"reasoning-gym has no usable task {task!r} to score answers with ({exc}). "
                    "Check the rows' rg_task metadata or the installed reasoning-gym version."
                ) from exc
        return self._by_task[key]

    def score(self, prediction: str, example: dict) -> float:
        """Score in [0, 1] of ``prediction`` for a row whose metadata names ``rg_task``."""
        meta = row_metadata(example)
        task = meta.get("rg_task")
        if not task:
            raise UserError(
                f"Row {example.get('row')} of source {example.get('source')!r} has no rg_task in "
                "its metadata, so reasoning-gym cannot score it; use metric 'exact_match'."
            )
        entry = {
            "question": example.get("prompt", ""),
            "answer": example.get("response", ""),
            "metadata": meta,
        }
        config = meta.get("rg_config")
        scorer = self._dataset(str(task), config if isinstance(config, dict) else None)
        with _answers_not_run(scorer):  # some scorers eval the answer: the model's text is not run as code
            return float(scorer.score_answer(prediction, entry))


# --------------------------------------------------------------------------- generation


def _generation_room(max_length: int, max_new_tokens: int) -> int:
    """How many prompt tokens generation keeps: what ``max_length`` leaves beside the new
    tokens (at least one)."""
    return max(1, max_length - max_new_tokens)


def _generation_prompt_ids(tokenizer: Any, prompts: Sequence[str],
                           contexts: Sequence[list[dict[str, str]] | None] | None = None) -> list[list[int]]:
    """Each prompt's token ids as generation feeds them (rendered as in training, after its
    chat context), uncut."""
    contexts = contexts if contexts is not None else [None] * len(prompts)
    return [tokenizer(render_prompt(tokenizer, p, c), add_special_tokens=False)["input_ids"]
            for p, c in zip(prompts, contexts)]


def generate_answers(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_length: int, max_new_tokens: int, batch_size: int,
    contexts: Sequence[list[dict[str, str]] | None] | None = None,
) -> list[str]:
    """Greedy answers for ``prompts`` (``contexts``: each one's chat context, see
    :func:`~subsetctl.modeling.encoding.row_context`): left-padded batches, prompts
    rendered as in training (chat template) and truncated from the left; only new tokens
    are decoded."""
    from transformers import GenerationConfig

    pad = pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    gen_config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, eos_token_id=eos
    )
    device = next(model.parameters()).device
    room = _generation_room(max_length, max_new_tokens)
    encoded = [ids[-room:] for ids in _generation_prompt_ids(tokenizer, prompts, contexts)]
    answers: list[str] = [""] * len(prompts)
    order = np.argsort([len(e) for e in encoded], kind="stable")
    with in_eval_mode(model), torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + max(1, batch_size)]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attn = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = encoded[i]
                ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                attn[row, width - len(seq) :] = 1
            out = model.generate(
                input_ids=ids.to(device), attention_mask=attn.to(device), generation_config=gen_config
            )
            for row, i in enumerate(idx):
                answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    return answers


# --------------------------------------------------------------------------- classifier metrics


def _classify(
    model: Any, tokenizer: Any, examples: Sequence[dict], max_length: int, batch_size: int
) -> list[int]:
    from subsetctl.modeling.encoding import encode_classifier

    device = next(model.parameters()).device
    preds: list[int] = []
    with in_eval_mode(model), torch.inference_mode():
        for start in range(0, len(examples), max(1, batch_size)):
            chunk = examples[start : start + max(1, batch_size)]
            batch = encode_classifier(
                tokenizer, [str(e["prompt"]) for e in chunk], [int(e["label"]) for e in chunk], max_length
            )
            logits = model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits
            preds.extend(int(x) for x in logits.argmax(dim=-1).cpu())
    return preds


# --------------------------------------------------------------------------- entry point


def _prompts_cut_for_generation(tokenizer: Any, prompts: Sequence[str], max_length: int, max_new_tokens: int,
                                contexts: Sequence[list[dict[str, str]] | None] | None = None) -> str | None:
    """A warning when test prompts are longer than generation leaves them room for
    (:func:`_generation_room` tokens, cut from the left as :func:`generate_answers` does):
    training and gradients keep up to ``max_length`` minus the answer, so a prompt whole
    there can lose its question here without any other stage saying so. A prompt after a
    chat context that loses only (part of) the context keeps its own text."""
    room = _generation_room(max_length, max_new_tokens)
    contexts = contexts if contexts is not None else [None] * len(prompts)
    lengths = _generation_prompt_ids(tokenizer, prompts, contexts)
    cut = [(n, p, c) for n, p, c in zip(map(len, lengths), prompts, contexts) if n > room]
    if not cut:
        return None
    preamble = template_preamble_tokens(tokenizer)
    own, in_context = [], 0
    for n, prompt, context in cut:
        if context is None:
            if not cut_within_template(n - room, preamble):
                own.append(n)  # the cut reaches the prompt's own text
        elif context_kept_whole(tokenizer, render_prompt(tokenizer, prompt, context), prompt, context, room):
            in_context += 1
        else:
            own.append(n)
    longest = max(n for n, _, _ in cut)
    opening = (f"{len(cut)} of {len(prompts)} test prompts are longer than model.max_length - "
               f"evaluate.max_new_tokens = {room} tokens (the longest: {longest}) and are cut from the left when "
               "answers are generated")
    fix = "Raise model.max_length or lower evaluate.max_new_tokens."
    lose = ("only earlier messages of their chat" if in_context == len(cut) else
            "only the chat template's text before them (its system prompt)" if not in_context else
            "only the chat template's system prompt or earlier messages of their chat")
    if not own:
        return f"{opening}; they lose {lose}, and the prompts themselves are whole. {fix}"
    if len(own) < len(cut):
        loses, its, score = ("loses", "its", "its score") if len(own) == 1 else ("lose", "their", "their scores")
        others = ("earlier messages of their chat" if in_context == len(cut) - len(own) else
                  "the chat template's system prompt" if not in_context else
                  "the chat template's system prompt or earlier messages of their chat")
        return (f"{opening}; {len(own)} of them {loses} part of {its} own text, so {score} may not reflect the "
                f"task (the others lose only {others}). {fix}")
    return f"{opening}, so their scores may not reflect the task. {fix}"


def answers_longer_than(tokenizer: Any, examples: Sequence[dict], max_new_tokens: int,
                        contexts: Sequence[list[dict[str, str]] | None] | None = None, of: int | None = None) -> str | None:
    """A warning when some gold answers take more tokens than generation may produce,
    even in the shortest form that matches: they can never be answered in full, whatever
    the fine-tune, so the score understates every selection alike and hides the
    differences between them.

    Each form is counted as training and generation tokenize it: after its rendered prompt
    (:func:`tokenize_responses`). Tokenized alone, a Metaspace tokenizer (Llama, Mistral)
    starts it with "▁", one token more, and an answer that fits exactly was warned about.
    All forms take one batch; ``max_length`` is set so that none is cut (its count is exact).
    ``contexts``: each example's chat context, read from its metadata when not given. ``of``:
    the test rows ``examples`` are the longest answers of (the data stage counts those alone),
    which the warning counts them among ("at least" where every one counted is too long)."""
    forms = [shortest_matching_forms(str(e.get("response", ""))) for e in examples]
    contexts = contexts if contexts is not None else [row_context(e) for e in examples]
    rendered = [render_prompt(tokenizer, str(e.get("prompt", "")), c) for e, c in zip(examples, contexts)]
    flat = [form for answer in forms for form in answer]
    ids = iter(tokenize_responses(tokenizer, [r for r, answer in zip(rendered, forms) for _ in answer], flat,
                                  max(map(len, flat), default=1)))
    lengths = [min(len(next(ids)) for _ in answer) for answer in forms]
    longer = [n for n in lengths if n > max_new_tokens]
    if not longer:
        return None
    total = len(examples) if of is None else of
    least = "at least " if total > len(examples) and len(longer) == len(examples) else ""
    return (f"{least}{len(longer)} of {total} test answers are longer than evaluate.max_new_tokens="
            f"{max_new_tokens} tokens, even written as briefly as they match (the longest has {max(longer)}): "
            f"generation stops before they are complete, so they cannot be answered in full. Raise "
            f"evaluate.max_new_tokens to at least {max(longer)} (and model.max_length with it, to leave room "
            "for the prompts).")


def evaluate_model(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict],
    kind: str,
    max_length: int,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    metric: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on held-out ``examples``.

    Args:
        metric: "auto" (reasoning-gym score for rows with ``rg_task``, exact match for other
            causal-LM rows, accuracy for classifiers), or force "exact_match",
            "reasoning_gym" or "accuracy".

    Returns:
        ``{"n", "kind", "metric", "score", "loss_ce", "loss_surrogate", "metrics",
        "predictions", "losses", "warnings"}``; ``score`` is the mean task metric in [0, 1],
        ``metrics`` holds every computed metric (``macro_f1`` for classifiers),
        ``predictions`` one dict per example (source, row, prediction, gold, score) and
        ``losses`` each example's test loss (None where not finite), in the examples' order:
        the report compares selections row by row on them.
    """
    _check_request(metric, kind, examples)
    examples = list(examples)
    warnings: list[str] = []
    if len(examples) < MIN_TEST_EXAMPLES:
        warnings.append(
            f"The test split has only {len(examples)} example{'' if len(examples) == 1 else 's'} (< {MIN_TEST_EXAMPLES}); "
            "the task metric is too noisy to compare subsets. Give the target more test rows (target.split.test, or "
            "the data target.test_loader reads) if the data allows."
        )
    if progress:
        progress(f"Computing test losses on {len(examples)} examples")
    outputs = per_example_outputs(model, tokenizer, examples, kind, max_length, batch_size)
    scored = outputs["scored"]  # (rows with no token to score have no loss: left out, said below)
    loss_ce = float(outputs["ce"][scored].mean()) if scored.any() else float("nan")
    loss_sur = float(surrogate_loss(torch.from_numpy(outputs["f"][scored])).mean()) if scored.any() else float("nan")

    if kind == "classifier":
        predictions, metrics, used = _score_classes(model, tokenizer, examples, max_length, batch_size)
    else:
        predictions, metrics, used = _score_generations(
            model, tokenizer, examples, max_length, max_new_tokens, batch_size, metric, warnings, progress
        )
    cut = _texts_cut(tokenizer, examples, kind, max_length)
    if cut:
        warnings.append(cut)
    if not scored.all():
        counts = TruncationCounts()
        counts.add(encode_rows(tokenizer, examples, kind, max_length), examples)
        none_left = "" if scored.any() else ", which none is left for"
        warnings.append(counts.unscored_notice("test examples", (f"it is left out of the test loss{none_left}",
                                                                 f"they are left out of the test loss{none_left}")))
    score = float(np.mean([p["score"] for p in predictions]))
    return {
        "n": len(examples),
        "kind": kind,
        "metric": used,
        "score": score,
        "loss_ce": loss_ce,
        "loss_surrogate": loss_sur,
        "metrics": metrics,
        "predictions": predictions,
        "losses": row_losses(outputs["ce"]),
        "warnings": warnings,
    }


def row_losses(ce: np.ndarray) -> list[float | None]:
    """Each test row's loss as :func:`evaluate_model` keeps it (JSON: None where not finite)."""
    return [float(v) if np.isfinite(v) else None for v in ce]


def test_losses(model: Any, tokenizer: Any, examples: Sequence[dict], kind: str, max_length: int,
                batch_size: int = 8) -> list[float | None]:
    """:func:`evaluate_model`'s ``losses`` alone (one forward pass over the rows, nothing
    generated): for a result kept by an earlier subsetctl, which did not record them."""
    return row_losses(per_example_outputs(model, tokenizer, list(examples), kind, max_length, batch_size)["ce"])


def _check_request(metric: str, kind: str, examples: Sequence[dict]) -> None:
    """Refuse an unknown metric or kind, an empty test split, and a metric of the other
    kind of model (accuracy for a causal LM, exact match for a classifier)."""
    if metric not in METRICS:
        raise UserError(f"Unknown metric {metric!r}; use one of: {', '.join(METRICS)}.")
    if kind not in ("causal-lm", "classifier"):
        raise UserError(f"Unknown model kind {kind!r}; use 'causal-lm' or 'classifier'.")
    if not examples:
        raise UserError(
            "The test split is empty; there is nothing to evaluate. Give the target a test split "
            "(target.split.test)."
        )
    if kind == "classifier" and metric in ("exact_match", "reasoning_gym"):
        raise UserError(f"evaluate.metric {metric!r} is for generated answers; a classifier uses 'accuracy'.")
    if kind == "causal-lm" and metric == "accuracy":
        raise UserError(
            "evaluate.metric 'accuracy' is for classifiers; a causal LM uses 'exact_match' or 'reasoning_gym'."
        )


def _score_classes(
    model: Any, tokenizer: Any, examples: list[dict], max_length: int, batch_size: int
) -> tuple[list[dict[str, Any]], dict[str, float], str]:
    """A classifier's predictions (one dict per example), its metrics (accuracy, macro F1)
    and the metric its score is ("accuracy")."""
    labels = [int(e["label"]) for e in examples]
    preds = _classify(model, tokenizer, examples, max_length, batch_size)
    predictions = [{"source": e.get("source"), "row": e.get("row"), "prediction": p, "gold": y, "score": float(p == y)}
                   for e, p, y in zip(examples, preds, labels)]
    metrics = {"accuracy": float(np.mean([p == y for p, y in zip(preds, labels)])), "macro_f1": macro_f1(preds, labels)}
    return predictions, metrics, "accuracy"


def _texts_cut(tokenizer: Any, examples: list[dict], kind: str, max_length: int) -> str | None:
    """A warning when ``max_length`` cuts test rows as the test loss (and a classifier's
    prediction) reads them: a classifier's text at its end, a causal LM's prompt from the
    left or its answer at its end, as training does. The gradients stage counts the train
    and validation rows it cuts, but test rows cut here were scored on part of them
    without any stage saying so (a causal LM's long test answer: its test loss covered
    its first ``max_length - 1`` tokens; the generation warnings are of generation). A causal
    LM's rows are warned of only when a prompt's own text or an answer is cut: the quickstart's
    13 of 64 test rows that lose only the chat template's system prompt are no news."""
    counts = TruncationCounts()
    if kind == "classifier":
        counts.add_classifier(tokenizer, examples, max_length)
        return counts.notice(max_length, "test examples")
    counts.add(encode_rows(tokenizer, examples, kind, max_length), examples)
    if not (counts.prompt_cut or counts.answer_cut):  # only a system prompt or earlier chat messages: text whole
        return None
    return counts.notice(max_length, "test examples as the test loss reads them", learns="the test loss scores")


def _score_generations(
    model: Any, tokenizer: Any, examples: list[dict], max_length: int, max_new_tokens: int, batch_size: int,
    metric: str, warnings: list[str], progress: Callable[[str], None] | None,
) -> tuple[list[dict[str, Any]], dict[str, float], str]:
    """A causal LM's generated answers scored (reasoning-gym's scorer for rows with
    ``rg_task`` unless ``metric`` is exact_match, exact match otherwise): one dict per
    example, the metrics, and what the score is ("reasoning_gym", "exact_match" or
    "mixed"). Answers that cannot fit ``max_new_tokens`` and prompts cut for generation
    are added to ``warnings``."""
    contexts = [row_context(e) for e in examples]
    too_long = answers_longer_than(tokenizer, examples, max_new_tokens, contexts)
    if too_long:
        warnings.append(too_long)
    cut = _prompts_cut_for_generation(tokenizer, [str(e["prompt"]) for e in examples], max_length, max_new_tokens,
                                      contexts)
    if cut:
        warnings.append(cut)
    if progress:
        progress(f"Generating answers for {len(examples)} examples")
    answers = generate_answers(
        model, tokenizer, [str(e["prompt"]) for e in examples], max_length, max_new_tokens, batch_size,
        contexts,
    )
    rg_scorer = ReasoningGymScorer()
    has_rg = [is_reasoning_gym_row(e) for e in examples]
    if metric == "reasoning_gym" and not all(has_rg):
        raise UserError(
            "Metric 'reasoning_gym' needs every test row to carry rg_task in its metadata; "
            f"{has_rg.count(False)} rows do not. Use metric 'auto' or 'exact_match'."
        )
    predictions: list[dict[str, Any]] = []
    em_scores, rg_scores = [], []
    for e, answer, rg_row in zip(examples, answers, has_rg):
        em = exact_match(answer, str(e.get("response", "")))
        em_scores.append(em)
        use_rg = rg_row and metric in ("auto", "reasoning_gym")
        score = rg_scorer.score(answer, e) if use_rg else em
        if use_rg:
            rg_scores.append(score)
        predictions.append({"source": e.get("source"), "row": e.get("row"), "prediction": answer,
                            "gold": e.get("response"), "score": score,
                            "scorer": "reasoning_gym" if use_rg else "exact_match"})
    metrics = {"exact_match": float(np.mean(em_scores))}
    if rg_scores:
        metrics["reasoning_gym"] = float(np.mean(rg_scores))
    if metric == "exact_match" or not any(has_rg):
        used = "exact_match"
    else:
        used = "reasoning_gym" if all(has_rg) else "mixed"
    return predictions, metrics, used
