"""Hook implementations of the example plugin: one component, one job, one tab."""

import json

import stnlp


@stnlp.hookimpl
def stnlp_components(settings):
    """The line-length model."""
    return [stnlp.Component("line-length", "Predicts a transcript line's length from its speaker")]


@stnlp.hookimpl
def stnlp_training_jobs(settings):
    """A small job that fits mean line length per speaker, step by step, with checkpoints."""
    return [
        stnlp.JobSpec(
            name="example-linefit",
            component="line-length",
            entrypoint="stnlp_example.train:train",
            output_model="line-length",
            instance_type="g5.xlarge",
            gpu_count=1,
            max_runtime_minutes=10,
            hyperparameters={"steps": 20, "step_seconds": 0.0, "fail_at_step": -1,
                             "heldout_every": 0, "shrinkage": 0.0},
            presets={"tiny": {"steps": 5}},
            search_space={"shrinkage": {"min": 0.0, "max": 50.0}},
            input_datasets=("transcripts",),
        )
    ]


def _latest(app):
    return stnlp.fetch_latest(app.settings, "line-length")


def _source(app) -> str:
    model = _latest(app)
    return f"registry line-length {model.version}" if model else "no trained model yet"


def _predict(app, speaker: str) -> str:
    model = _latest(app)
    if model is None:
        return "no trained line-length model yet: run `stnlp train example-linefit`"
    means = json.loads((model.path / "model.json").read_text())["mean_length"]
    if speaker not in means:
        return f"unknown speaker {speaker!r}"
    return f"{speaker}: about {means[speaker]:.0f} characters per line"


@stnlp.hookimpl
def stnlp_gradio_tabs(settings):
    """A tab asking the model for a speaker's typical line length."""

    def build(app):
        import gradio as gr  # here, not at import: training machines load the plugin too

        speaker = gr.Textbox(label="Speaker")
        answer = gr.Textbox(label="Typical line length")
        speaker.submit(lambda s: _predict(app, s), speaker, answer)

    return [
        stnlp.TabSpec(
            name="line-length", title="Line length", build=build, model_source=_source, order=900
        )
    ]
