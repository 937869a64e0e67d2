"""The network plugin: the character co-occurrence network from subtitles."""

from dataclasses import asdict

from stnlp.plugins import hookimpl
from stnlp.plugins.network.params import DEFAULT_MODEL, NetworkParams
from stnlp.plugins.spec import Component, JobSpec, TabSpec

COMPONENT = "network-characters"
MODEL = "character-network"


@hookimpl
def stnlp_components(settings):
    """The character network."""
    return [Component(COMPONENT, "Character co-occurrence network from NER")]


@hookimpl
def stnlp_training_jobs(settings):
    """The CPU batch job that runs NER over the subtitles and builds the network."""
    return [
        JobSpec(
            name=COMPONENT,
            component=COMPONENT,
            entrypoint="stnlp.plugins.network.job:run",
            output_model=MODEL,
            instance_type="c6i.2xlarge",
            gpu_count=0,
            spot=True,
            max_runtime_minutes=30,
            root_volume_gb=30,
            hyperparameters=asdict(
                NetworkParams(spacy_model=settings.model_id(COMPONENT, DEFAULT_MODEL))
            ),
            presets={"tiny": {"window": 5, "batch_size": 64}},
            input_datasets=("subtitles", "characters"),
            description="NER over the subtitles, co-occurrence graph, JSON/GraphML/CSV exports",
            sharding={hook: f"stnlp.plugins.network.job:{fn}" for hook, fn in
                      (("units", "episodes"), ("shard", "shard"), ("merge", "merge"))},
        )
    ]


@hookimpl
def stnlp_gradio_tabs(settings):
    """The interactive character network tab."""
    tab = "stnlp.plugins.network.tab"
    return [
        TabSpec(
            name="network",
            title="Character network",
            build=f"{tab}:build_tab",
            model_source=f"{tab}:model_source",
            order=30,
        )
    ]
