"""Job ``classifier-location``: fine-tune a sequence classifier on location types.

Reads the ``locations`` dataset, splits it stratified, fine-tunes with a class-weighted
cross-entropy loss (AdamW, one checkpoint per epoch, resumed when present), evaluates on the
held-out side and writes the model with its labels and metrics to ``ctx.output_dir``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

import torch
from rich.progress import Progress

from stnlp.plugins.classifier.defaults import LOCATION_DEFAULTS
from stnlp.plugins.classifier.labels import (
    Example,
    check_classes,
    class_weights,
    classification_metrics,
    examples_from_locations,
    stratified_split,
)
from stnlp.plugins.classifier.location_model import (
    LocationClassifier,
    base_model_name,
    build_classifier,
    save_classifier,
)
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


def evaluate(
    classifier: LocationClassifier, test: Sequence[Example], classes: Sequence[str]
) -> dict:
    """Held-out metrics of ``classifier`` on ``test``."""
    probs = classifier.probabilities([e.text for e in test])
    predicted = [classifier.labels[int(i)] for i in probs.argmax(dim=-1)]
    return classification_metrics([e.label for e in test], predicted, classes)


def train(ctx: TrainingContext) -> TrainingOutcome:
    """Entrypoint of ``classifier-location``: fine-tune, evaluate, save to ``ctx.output_dir``."""
    from stnlp.runtime.data import load_locations

    params = {**LOCATION_DEFAULTS, **ctx.hyperparameters}
    source = ctx.dataset("locations")
    examples = examples_from_locations(load_locations(source).records)
    labels = [e.label for e in examples]
    classes = check_classes(labels, float(params["test_fraction"]), source=str(source))
    train_idx, test_idx = stratified_split(
        labels, float(params["test_fraction"]), int(params["seed"])
    )
    train_set = [examples[i] for i in train_idx]
    test_set = [examples[i] for i in test_idx]
    model, tokenizer = build_classifier(params["base_model"], classes, int(params["seed"]))
    started = time.perf_counter()
    losses = fine_tune(model, tokenizer, train_set, classes, params, ctx)
    seconds = time.perf_counter() - started
    metrics = evaluate(LocationClassifier(model, tokenizer, classes), test_set, classes)
    metrics.update(
        train_examples=len(train_set),
        epochs=int(params["epochs"]),
        first_loss=losses[0],
        final_loss=losses[-1],
        train_seconds=round(seconds, 2),
    )
    ctx.log_metrics(step=int(params["epochs"]), **metrics)
    save_classifier(model, tokenizer, ctx.output_dir, classes, metrics)
    event(log, "location classifier trained", accuracy=metrics["accuracy"])
    return TrainingOutcome(metrics=metrics, base_model=base_model_name(params["base_model"]))
