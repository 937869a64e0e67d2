"""The "Location classifier" tab: a text in, the top location types with probabilities out.

Model source, in order: the latest published ``classifier-location`` from the registry, but
only where its recorded cross-validated metric beats the nearest-centroid baseline measured on
the same folds (:func:`stnlp.runtime.baseline.judge`); a hub classifier configured as
``models.classifier-location`` when it is in the local Hugging Face cache and has location
labels; else the offline fallback, the nearest-centroid classifier itself over MiniLM
embeddings of the sample locations. The tab says which one is live, why, and shows its
held-out metrics.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from stnlp.common.errors import UserError
from stnlp.plugins.classifier.labels import examples_from_locations
from stnlp.plugins.classifier.location_centroid import fit_with_cv
from stnlp.plugins.classifier.location_model import LocationClassifier
from stnlp.runtime import logs
from stnlp.runtime.baseline import judge
from stnlp.runtime.data import SAMPLE_DIR
from stnlp.runtime.encoder import shared_encoder

log = logging.getLogger(__name__)

COMPONENT = MODEL = "classifier-location"
FALLBACK = "offline fallback: nearest centroid over all-MiniLM-L6-v2 embeddings of the sample"
EXAMPLES = (
    "Hawkins Lab. A fenced government facility with long corridors and guarded labs.",
    "The Wheelers' basement. A cosy room with a couch, a table and board games.",
    "Mirkwood. A dark forest road at night where a boy rides his bike home.",
)
_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


@dataclass(frozen=True)
class LocationSource:
    """The live classifier (anything with ``predict`` and ``metrics``) and where it comes from."""

    classifier: object
    description: str


def _registry_model(settings):
    from stnlp.runtime.registry import fetch_latest

    return fetch_latest(settings, MODEL)


def _hub_classifier(settings) -> LocationClassifier | None:
    """The configured hub classifier if it loads offline and carries real labels."""
    model_id = settings.models.get(COMPONENT)
    if not model_id:
        return None
    try:
        classifier = LocationClassifier.load(model_id)
    except UserError as exc:
        logs.event(log, "hub location model unavailable", logging.INFO, reason=str(exc))
        return None
    if any(_DEFAULT_LABEL.match(label) for label in classifier.labels):
        logs.event(log, "hub model has no location labels", logging.WARNING, model=model_id)
        return None
    return classifier


def _verdict(model):
    """Whether to use the registry version ``model``, and why (``None`` without one)."""
    if model is None:
        return None
    return judge(model.manifest, f"registry {MODEL} {model.version}")


def load_source(settings, sample_dir: Path | None = None) -> LocationSource:
    """The live location classifier: the registry version where it beats its baseline, else the
    configured hub model, else the fallback (whose description then says why)."""
    model = _registry_model(settings)
    verdict = _verdict(model)
    if verdict is not None and verdict.use:
        try:
            classifier = LocationClassifier.load(model.path)
            return LocationSource(
                classifier, f"trained model; registry: {MODEL} {model.version} ({verdict.reason})"
            )
        except UserError as exc:
            logs.event(log, "registry model unreadable", logging.WARNING, reason=str(exc))
    why = f"; not the trained version: {verdict.reason}" if verdict and not verdict.use else ""
    hub = _hub_classifier(settings)
    if hub is not None:
        return LocationSource(hub, f"hub model {settings.models[COMPONENT]}{why}")
    from stnlp.runtime.data import load_locations

    folder = (sample_dir or SAMPLE_DIR) / "locations"
    examples = examples_from_locations(load_locations(folder).records)
    return LocationSource(fit_with_cv(shared_encoder(), examples), FALLBACK + why)


def model_source(app) -> str:
    """Which source the tab uses (the hub model is named when configured), and why."""
    model = _registry_model(app.settings)
    verdict = _verdict(model)
    if verdict is not None and verdict.use:
        return f"trained model; registry: {MODEL} {model.version} ({verdict.reason})"
    why = f"; not the trained version: {verdict.reason}" if verdict else ""
    if app.settings.models.get(COMPONENT):
        configured = app.settings.models[COMPONENT]
        return f"hub model {configured} if cached locally, else {FALLBACK}{why}"
    return FALLBACK + why


def metrics_views(metrics: dict) -> tuple[str, pd.DataFrame]:
    """Held-out metrics as a markdown line and the confusion matrix as a table."""
    if not metrics:
        return "No held-out metrics recorded for this model.", pd.DataFrame()
    split = metrics.get("split", "a held-out split")
    line = (
        f"Held-out accuracy **{metrics['accuracy']:.2f}**, macro-F1 **{metrics['macro_f1']:.2f}** "
        f"on {metrics['test_examples']} examples ({split})."
    )
    baseline = metrics.get("baseline")
    if baseline:
        line += (
            f" Nearest-centroid baseline on the same folds: accuracy {baseline['accuracy']:.2f}, "
            f"macro-F1 {baseline['macro_f1']:.2f}."
        )
    confusion = metrics["confusion_matrix"]
    table = pd.DataFrame(confusion["matrix"], columns=confusion["labels"])
    table.insert(0, "true \\ predicted", confusion["labels"])
    return line, table


def classify(source: LocationSource, text: str) -> dict[str, float]:
    """Probabilities per location type for ``text`` (a gradio error when it is empty)."""
    if not text or not text.strip():
        raise gr.Error("Enter a location name and description.")
    return source.classifier.predict(text.strip())


def build_tab(app) -> None:
    """Create the tab's components inside the open ``gr.Tab``."""
    source = load_source(app.settings)
    summary, confusion = metrics_views(source.classifier.metrics)
    gr.Markdown(
        "What kind of place a location is: type its name and a sentence describing it, and get "
        "the five likeliest location types with their probabilities.",
        elem_classes="stnlp-hint",
    )
    with gr.Row():
        with gr.Column(min_width=280):
            text = gr.Textbox(
                label="Location name and description",
                placeholder="Hawkins Lab. A fenced government facility with long corridors.",
                lines=3,
            )
            button = gr.Button("Classify", variant="primary")
            gr.Examples([[e] for e in EXAMPLES], text, label="Examples")
            label = gr.Label(label="Location type", num_top_classes=5)
        with gr.Column(min_width=280):
            gr.Markdown(summary)
            gr.Dataframe(confusion, label="Held-out confusion matrix", interactive=False)

    def predict(value):
        return classify(source, value)

    button.click(predict, text, label)
    text.submit(predict, text, label)
