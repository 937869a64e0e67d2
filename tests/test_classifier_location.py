"""The location classifier: split, weights, metrics, real fine-tuning, reload, fallback, tab."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest
import torch

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.classifier import location_tab
from stnlp.plugins.classifier.defaults import TINY
from stnlp.plugins.classifier.labels import (
    Example,
    check_classes,
    class_weights,
    classification_metrics,
    stratified_folds,
)
from stnlp.plugins.classifier.location_centroid import fit_with_cv
from stnlp.plugins.classifier.location_job import fine_tune, train
from stnlp.plugins.classifier.location_model import (
    LocationClassifier,
    build_classifier,
    save_classifier,
)
from stnlp.plugins.classifier.plugin import stnlp_training_jobs
from stnlp.runtime.encoder import shared_encoder
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import open_stores
from stnlp.runtime.training import TrainingContext

torch.set_num_threads(1)

# Three location types, each with its own vocabulary: separable from the words alone.
VOCAB = {
    "Residential": ["home", "bedroom", "kitchen", "family", "couch", "sleep"],
    "Institutional": ["school", "classroom", "teacher", "lockers", "students", "principal"],
    "Laboratory": ["lab", "scientists", "experiment", "machines", "gate", "tests"],
}


def toy_rows(per_class: int = 8) -> list[dict]:
    """Location records whose type can be told from their words."""
    rows = []
    for kind, words in VOCAB.items():
        for i in range(per_class):
            a, b, c = words[i % 6], words[(i + 1) % 6], words[(i + 2) % 6]
            rows.append(
                {
                    "location_name": f"The {a} {i}",
                    "location_description": f"A place with {b} and {c}, all about the {a}.",
                    "location_type": kind,
                }
            )
    return rows


def make_ctx(tmp_path: Path, rows: list[dict], params: dict) -> TrainingContext:
    data = tmp_path / "data" / "locations"
    data.mkdir(parents=True, exist_ok=True)
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    (data / "locations.jsonl").write_text(text, encoding="utf-8")
    return TrainingContext.in_directory(
        tmp_path / "run", "run-1", "classifier-location", params, tmp_path / "data"
    )


def tiny_params(**changes) -> dict:
    """The job's hyperparameters with its ``tiny`` preset, as `stnlp train --preset tiny`."""
    (spec,) = [j for j in stnlp_training_jobs(Settings()) if j.name == "classifier-location"]
    return {**spec.resolved_hyperparameters("tiny"), **changes}


def test_stratified_folds_hold_every_class_and_cover_every_example_once():
    labels = ["a"] * 10 + ["b"] * 3 + ["c"] * 5 + ["d"] * 7
    folds = stratified_folds(labels, 5, seed=3)
    assert len(folds) == 3  # capped at the smallest class ("b": 3)
    assert sorted(i for fold in folds for i in fold) == list(range(len(labels)))
    for fold in folds:
        assert {labels[i] for i in fold} == {"a", "b", "c", "d"}
    assert max(map(len, folds)) - min(map(len, folds)) <= 1


def test_stratified_folds_are_seeded():
    labels = ["a"] * 6 + ["b"] * 6
    assert stratified_folds(labels, 3, seed=1) == stratified_folds(labels, 3, seed=1)
    assert stratified_folds(labels, 3, seed=1) != stratified_folds(labels, 3, seed=2)


def test_class_weights_are_balanced():
    labels = ["a", "a", "a", "b"]
    weights = class_weights(labels, ["a", "b"])
    assert weights == pytest.approx([4 / 6, 2.0])
    # every class carries the same total weight
    assert 3 * weights[0] == pytest.approx(1 * weights[1])


def test_single_class_is_an_error():
    with pytest.raises(UserError, match=r"at least 2 location types.*'Residential', 4"):
        stratified_folds(["Residential"] * 4, 5)


def test_too_few_examples_of_a_class_is_an_error_naming_it():
    with pytest.raises(UserError, match=r"'Lab' has 1 example"):
        check_classes(["Home", "Home", "Home", "Lab"])
    with pytest.raises(UserError, match="cv_folds must be at least 2"):
        stratified_folds(["Home", "Home", "Lab", "Lab"], 1)


def test_metrics_match_a_hand_computed_example():
    truth = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "b", "a"]
    metrics = classification_metrics(truth, predicted, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # F1: a = 2*1/(2+2) = 0.5, b = 2*2/(3+2) = 0.8, c = 0
    assert metrics["f1_per_class"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 0.0})
    assert metrics["macro_f1"] == pytest.approx(1.3 / 3)
    assert metrics["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_fine_tuning_lowers_the_loss_and_the_saved_model_predicts_the_same(tmp_path):
    examples = [
        Example(f"{r['location_name']}. {r['location_description']}", r["location_type"])
        for r in toy_rows(6)
    ]
    classes = sorted(VOCAB)
    model, tokenizer = build_classifier(TINY, classes)
    losses = fine_tune(model, tokenizer, examples, classes, tiny_params(epochs=10))
    assert losses[-1] < losses[0] * 0.5
    original = LocationClassifier(model, tokenizer, classes)
    save_classifier(model, tokenizer, tmp_path / "model", classes, {"accuracy": 1.0})
    assert (tmp_path / "model" / "model.safetensors").exists()
    reloaded = LocationClassifier.load(tmp_path / "model")
    assert reloaded.labels == classes
    assert reloaded.metrics == {"accuracy": 1.0}
    texts = ["The kitchen at home", "A school classroom", "The lab experiment"]
    assert torch.allclose(original.probabilities(texts), reloaded.probabilities(texts), atol=1e-5)


def test_training_job_cross_validates_against_the_baseline_on_the_same_folds(tmp_path):
    rows = toy_rows(6)
    rows[0]["location_description"] = " ".join(["home kitchen family"] * 1500)  # overlong
    ctx = make_ctx(tmp_path, rows, tiny_params(epochs=12, cv_folds=2, batch_size=16))
    outcome = train(ctx)
    metrics = outcome.metrics
    assert metrics["accuracy"] > 1 / 3  # three balanced classes: chance is 1/3
    assert metrics["final_loss"] < metrics["first_loss"]
    # every location held out once, none dropped for its length
    assert metrics["test_examples"] == 18 and metrics["train_examples"] == 18
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 18
    heldout = metrics["heldout"]
    assert heldout["metric"] == "macro_f1" and heldout["baseline"] == "nearest-centroid"
    assert heldout["value"] == metrics["macro_f1"]
    assert heldout["baseline_value"] == metrics["baseline"]["macro_f1"]
    assert heldout["split"] == "2-fold stratified CV over 18 locations"
    assert heldout["examples"] == 18
    # the baseline is the tab's fallback, measured on the same folds: its own CV agrees
    examples = [Example(f"{r['location_name']}. {r['location_description']}", r["location_type"])
                for r in rows]  # fmt: skip
    fallback = fit_with_cv(shared_encoder(), examples, folds=2, seed=0)
    assert fallback.metrics["macro_f1"] == pytest.approx(heldout["baseline_value"])
    assert outcome.base_model.startswith("tiny")
    history = ctx.read_metrics()
    assert [r["step"] for r in history if "train_loss" in r] == list(range(1, 13))
    assert json.loads((ctx.output_dir / "labels.json").read_text()) == sorted(VOCAB)
    assert (ctx.output_dir / "model.safetensors").exists()


def test_training_job_resumes_from_its_checkpoint(tmp_path):
    ctx = make_ctx(tmp_path, toy_rows(4), tiny_params(epochs=2, cv_folds=2))
    first = train(ctx)
    assert (ctx.checkpoint_dir / "cross_validation.json").exists()
    resumed_ctx = TrainingContext(
        **{**ctx.__dict__, "hyperparameters": tiny_params(epochs=3, cv_folds=2)}
    )
    second = train(resumed_ctx)
    losses = [r["train_loss"] for r in ctx.read_metrics() if "train_loss" in r]
    assert len(losses) == 3  # epochs 1-2 from the first run, only epoch 3 from the second
    assert second.metrics["first_loss"] == first.metrics["first_loss"]


def test_a_diverging_loss_fails_with_one_line_naming_it(tmp_path):
    ctx = make_ctx(tmp_path, toy_rows(4), tiny_params(learning_rate=1e30, epochs=2, cv_folds=2))
    with pytest.raises(UserError, match=r"training loss is (nan|inf) in epoch \d+; lower "
                                        r"learning_rate") as caught:  # fmt: skip
        train(ctx)
    assert "\n" not in str(caught.value)


def test_training_on_no_locations_is_an_error_naming_the_file(tmp_path):
    ctx = make_ctx(tmp_path, [], tiny_params())
    with pytest.raises(Exception, match=r"locations"):
        train(ctx)


def test_training_job_rejects_a_class_too_small_to_split(tmp_path):
    rows = toy_rows(4)
    rows.append({"location_name": "Mall", "location_description": "Shops", "location_type": "Mall"})
    ctx = make_ctx(tmp_path, rows, tiny_params())
    with pytest.raises(UserError, match=r"'Mall' has 1 example"):
        train(ctx)


def test_offline_fallback_fits_sample_like_data_above_chance():
    examples = [
        Example(f"{r['location_name']}. {r['location_description']}", r["location_type"])
        for r in toy_rows(6)
    ]
    classifier = fit_with_cv(shared_encoder(), examples)
    assert classifier.metrics["accuracy"] > 1 / 3
    assert classifier.metrics["test_examples"] == 18  # every example held out once
    probs = classifier.predict("A family kitchen with a couch, home sweet home")
    assert sum(probs.values()) == pytest.approx(1.0)
    assert max(probs, key=probs.get) == "Residential"


def test_tab_uses_a_trained_version_only_where_it_beats_its_baseline(tmp_path):
    settings = Settings(store=str(tmp_path / "store"))
    sample = tmp_path / "sample"
    (sample / "locations").mkdir(parents=True)
    rows = "\n".join(json.dumps(r) for r in toy_rows(4))
    (sample / "locations" / "locations.jsonl").write_text(rows, encoding="utf-8")

    fallback = location_tab.load_source(settings, sample)
    assert fallback.description.startswith("offline fallback")
    assert fallback.classifier.metrics["test_examples"] == 12

    ctx = make_ctx(tmp_path, toy_rows(4), tiny_params(epochs=2, cv_folds=2))  # too short to win
    outcome = train(ctx)
    registry = ModelRegistry(open_stores(settings).models)
    version = registry.publish("classifier-location", ctx.output_dir, metrics=outcome.metrics)
    losing = location_tab.load_source(settings, sample)
    reason = f"registry classifier-location {version}'s held-out macro_f1"
    assert losing.description.startswith("offline fallback")
    assert reason in losing.description and "nearest-centroid" in losing.description
    app = type("App", (), {"settings": settings})()
    assert reason in location_tab.model_source(app)

    heldout = {**outcome.metrics["heldout"], "value": 1.0, "baseline_value": 0.5}
    winner = registry.publish(
        "classifier-location", ctx.output_dir, metrics={**outcome.metrics, "heldout": heldout}
    )
    source = location_tab.load_source(settings, sample)
    registry = f"trained model; registry: classifier-location {winner} ("
    assert source.description.startswith(registry)
    assert "beats nearest-centroid's 0.5" in source.description
    assert source.classifier.metrics["macro_f1"] == outcome.metrics["macro_f1"]
    probs = location_tab.classify(source, "The school classroom and its lockers")
    assert set(probs) == set(VOCAB) and sum(probs.values()) == pytest.approx(1.0)
    with pytest.raises(gr.Error):
        location_tab.classify(source, "   ")
    summary, confusion = location_tab.metrics_views(source.classifier.metrics)
    assert "macro-F1" in summary and "Nearest-centroid baseline" in summary
    assert list(confusion.columns[1:]) == sorted(VOCAB)
