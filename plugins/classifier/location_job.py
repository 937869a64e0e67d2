"""Job ``classifier-location``: fine-tune a sequence classifier on location types.

Reads the ``locations`` dataset and measures the fine-tuned model and its baseline, the
nearest-centroid classifier over MiniLM embeddings, on the same stratified k-fold
cross-validation (every location is held out once: on a small set one split of a few items
means little). Then it fine-tunes on every location with a class-weighted cross-entropy loss
(AdamW, one checkpoint per epoch, resumed when present) and writes the model with its labels
and metrics to ``ctx.output_dir``. ``metrics["heldout"]`` records both cross-validated
macro-F1 scores (:func:`stnlp.runtime.baseline.heldout_record`); the interface uses the model
only where it beats the baseline.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence

import torch
from rich.progress import Progress

from stnlp.common.errors import UserError
from stnlp.plugins.classifier.defaults import LOCATION_DEFAULTS
from stnlp.plugins.classifier.labels import (
    Example,
    check_classes,
    class_weights,
    classification_metrics,
    examples_from_locations,
    stratified_folds,
)
from stnlp.plugins.classifier.location_centroid import BASELINE, cross_validated
from stnlp.plugins.classifier.location_model import (
    LocationClassifier,
    base_model_name,
    build_classifier,
    save_classifier,
)
from stnlp.runtime.baseline import heldout_record
from stnlp.runtime.encoder import shared_encoder
from stnlp.runtime.logs import event
from stnlp.runtime.training import TrainingContext, TrainingOutcome

log = logging.getLogger(__name__)


def _batches(examples: Sequence[Example], size: int, rng: random.Random):
    order = list(range(len(examples)))
    rng.shuffle(order)
    for start in range(0, len(order), size):
        yield [examples[i] for i in order[start : start + size]]


def fine_tune(
    model,
    tokenizer,
    train: Sequence[Example],
    classes: Sequence[str],
    params: dict,
    ctx: TrainingContext | None = None,
) -> list[float]:
    """Train ``model`` in place; return the mean loss of each epoch.

    With a ``ctx``, each epoch's loss goes to the run record and a checkpoint (model and
    optimizer state) to ``ctx.checkpoint_dir``; a run restarted with the same context resumes
    after the last finished epoch.
    """
    index = {c: i for i, c in enumerate(classes)}
    weights = torch.tensor(class_weights([e.label for e in train], classes))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(params["learning_rate"]), weight_decay=params["weight_decay"]
    )
    checkpoint = ctx.checkpoint_dir / "classifier.pt" if ctx else None
    first_epoch, losses = 0, []
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch, losses = int(state["epoch"]), list(state["losses"])
    epochs = int(params["epochs"])
    rng = random.Random(int(params["seed"]))
    model.train()
    with Progress(transient=True) as progress:
        task = progress.add_task("fine-tuning", total=epochs, completed=first_epoch)
        for epoch in range(first_epoch, epochs):
            rng.seed(int(params["seed"]) + epoch)
            total, count = 0.0, 0
            for batch in _batches(train, int(params["batch_size"]), rng):
                inputs = tokenizer(
                    [e.text for e in batch],
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                target = torch.tensor([index[e.label] for e in batch])
                loss = loss_fn(model(**inputs).logits, target)
                if not math.isfinite(loss.item()):
                    raise UserError(
                        f"classifier-location: the training loss is {loss.item()} in epoch "
                        f"{epoch + 1}; lower learning_rate (now {params['learning_rate']})"
                    )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                count += len(batch)
            losses.append(total / count)
            if ctx is not None:
                ctx.log_metrics(step=epoch + 1, train_loss=losses[-1])
                state = {"epoch": epoch + 1, "losses": losses, "model": model.state_dict()}
                torch.save({**state, "optimizer": optimizer.state_dict()}, checkpoint)
            event(log, "epoch done", epoch=epoch + 1, loss=round(losses[-1], 4))
            progress.advance(task)
    model.eval()
    return losses


def cross_validate(
    examples: Sequence[Example], classes: Sequence[str], folds: Sequence[Sequence[int]],
    params: dict,
) -> dict[str, list[str]]:  # fmt: skip
    """Out-of-fold predictions of the fine-tuned model and of the nearest-centroid baseline,
    on the same ``folds``: ``{"model": [...], "baseline": [...]}`` in example order."""
    labels = [e.label for e in examples]
    model_predictions = [""] * len(examples)
    for number, fold in enumerate(folds, start=1):
        held = set(fold)
        train_set = [e for i, e in enumerate(examples) if i not in held]
        model, tokenizer = build_classifier(params["base_model"], classes, int(params["seed"]))
        fine_tune(model, tokenizer, train_set, classes, params)
        classifier = LocationClassifier(model, tokenizer, classes)
        probs = classifier.probabilities([examples[i].text for i in fold])
        for i, row in zip(fold, probs.argmax(dim=-1), strict=True):
            model_predictions[i] = classes[int(row)]
        event(log, "fold done", fold=number, folds=len(folds))
    vectors = shared_encoder().encode([e.text for e in examples])
    return {"model": model_predictions, "baseline": cross_validated(vectors, labels, folds)}


def _cached_cross_validation(ctx, examples, classes, folds, params) -> dict[str, list[str]]:
    """:func:`cross_validate`, saved in the checkpoint folder so a resumed run skips it."""
    path = ctx.checkpoint_dir / "cross_validation.json"
    question = {k: params[k] for k in sorted(LOCATION_DEFAULTS)}
    question["texts"] = [e.text for e in examples]
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("question") == question:
            return saved["predictions"]
    predictions = cross_validate(examples, classes, folds, params)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"question": question, "predictions": predictions}
    path.write_text(json.dumps(payload), encoding="utf-8")
    return predictions


def train(ctx: TrainingContext) -> TrainingOutcome:
    """Entrypoint of ``classifier-location``: cross-validate against the baseline, fine-tune on
    everything, save to ``ctx.output_dir``."""
    from stnlp.runtime.data import load_locations

    params = {**LOCATION_DEFAULTS, **ctx.hyperparameters}
    source = ctx.dataset("locations")
    examples = examples_from_locations(load_locations(source).records)
    if not examples:
        raise UserError(f"{source}: no locations to train on")
    labels = [e.label for e in examples]
    classes = check_classes(labels, source=str(source))
    folds = stratified_folds(labels, int(params["cv_folds"]), int(params["seed"]))
    split = f"{len(folds)}-fold stratified CV over {len(examples)} locations"
    predictions = _cached_cross_validation(ctx, examples, classes, folds, params)
    metrics = classification_metrics(labels, predictions["model"], classes)
    baseline = classification_metrics(labels, predictions["baseline"], classes)
    model, tokenizer = build_classifier(params["base_model"], classes, int(params["seed"]))
    started = time.perf_counter()
    losses = fine_tune(model, tokenizer, examples, classes, params, ctx)
    seconds = time.perf_counter() - started
    metrics.update(
        split=split,
        baseline={k: baseline[k] for k in ("accuracy", "macro_f1", "f1_per_class")},
        heldout=heldout_record(
            "macro_f1",
            metrics["macro_f1"],
            BASELINE,
            baseline["macro_f1"],
            split=split,
            examples=len(examples),
        ),  # fmt: skip
        train_examples=len(examples),
        epochs=int(params["epochs"]),
        first_loss=losses[0],
        final_loss=losses[-1],
        train_seconds=round(seconds, 2),
    )
    ctx.log_metrics(step=int(params["epochs"]), **metrics)
    save_classifier(model, tokenizer, ctx.output_dir, classes, metrics)
    event(log, "location classifier trained", macro_f1=round(metrics["macro_f1"], 3),
          baseline_macro_f1=round(baseline["macro_f1"], 3))  # fmt: skip
    return TrainingOutcome(metrics=metrics, base_model=base_model_name(params["base_model"]))
