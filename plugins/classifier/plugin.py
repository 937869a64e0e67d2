"""The classifier plugin: location classifier (fine-tuned) and theme classifier (zero-shot)."""

from stnlp.plugins import hookimpl
from stnlp.plugins.classifier.defaults import (
    LOCATION_DEFAULTS,
    LOCATION_SEARCH,
    THEME_DEFAULTS,
    TINY,
)
from stnlp.plugins.spec import Component, JobSpec, TabSpec

LOCATION = "classifier-location"
THEME = "classifier-theme"


@hookimpl
def stnlp_components(settings):
    """The location and theme classifiers."""
    return [
        Component(LOCATION, "Location type classifier, fine-tuned on locations"),
        Component(THEME, "Zero-shot theme scores per episode and window"),
    ]


@hookimpl
def stnlp_training_jobs(settings):
    """Fine-tuning the location classifier (GPU) and scoring themes over the subtitles (CPU)."""
    return [
        JobSpec(
            name=LOCATION,
            component=LOCATION,
            entrypoint="stnlp.plugins.classifier.location_job:train",
            output_model=LOCATION,
            instance_type="g5.xlarge",
            gpu_count=1,
            spot=True,
            max_runtime_minutes=60,
            root_volume_gb=50,
            hyperparameters={
                **LOCATION_DEFAULTS,
                "base_model": settings.model_id(LOCATION, LOCATION_DEFAULTS["base_model"]),
            },
            presets={
                "tiny": {
                    "base_model": TINY,
                    "epochs": 20,
                    "batch_size": 8,
                    "learning_rate": 3e-3,
                    "cv_folds": 3,
                }  # fmt: skip
            },
            search_space=LOCATION_SEARCH,
            input_datasets=("locations",),
            description="Fine-tunes a sequence classifier (name + description -> location type)",
        ),
        JobSpec(
            name=THEME,
            component=THEME,
            entrypoint="stnlp.plugins.classifier.theme_job:run",
            output_model=THEME,
            instance_type="m6i.xlarge",
            gpu_count=0,
            spot=True,
            max_runtime_minutes=30,
            root_volume_gb=30,
            hyperparameters={
                **THEME_DEFAULTS,
                "method": "nli" if settings.models.get(THEME) else "embedding",
                "nli_model": settings.model_id(THEME, THEME_DEFAULTS["nli_model"]),
            },
            presets={
                "tiny": {"method": "embedding", "max_sentences_per_episode": 20},
                "local": {"method": "embedding"},  # the demo's: the Themes tab's own question
            },
            input_datasets=("subtitles",),
            description="Scores every subtitle sentence against the themes; publishes the scores",
            sharding={hook: f"stnlp.plugins.classifier.theme_job:{fn}" for hook, fn in
                      (("units", "episodes"), ("shard", "shard"), ("merge", "merge"))},
        ),
    ]


@hookimpl
def stnlp_gradio_tabs(settings):
    """The location classifier tab and the themes tab."""
    location_tab = "stnlp.plugins.classifier.location_tab"
    theme_tab = "stnlp.plugins.classifier.theme_tab"
    return [
        TabSpec(
            name="locations",
            title="Location classifier",
            build=f"{location_tab}:build_tab",
            model_source=f"{location_tab}:model_source",
            order=40,
        ),
        TabSpec(
            name="themes",
            title="Themes",
            build=f"{theme_tab}:build_tab",
            model_source=f"{theme_tab}:model_source",
            order=50,
        ),
    ]
