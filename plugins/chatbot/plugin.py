"""The chatbot plugin: character chatbots fine-tuned with LoRA."""

from stnlp.plugins import hookimpl
from stnlp.plugins.chatbot.catalog import SMOLLM2
from stnlp.plugins.spec import Component, JobSpec, TabSpec

BASES = {
    "chatbot-llama": ("llama", "meta-llama/Llama-3.2-3B-Instruct", "Llama-3.2-3B-Instruct"),
    "chatbot-qwen": ("qwen", "Qwen/Qwen2.5-3B-Instruct", "Qwen2.5-3B-Instruct"),
}
DEFAULTS = {
    "character": "Eleven",
    "lora_r": 16,
    "lora_alpha": 32,
    "target_modules": "all-linear",
    "lora_layers": 0,
    "epochs": 3,
    "learning_rate": 2e-4,
    "tokens_per_step": 8192,
    "max_sample_tokens": 512,
    "max_context": 2048,
    "context_lines": 2,
    "description_words": 120,
    "retrieved_lines": 4,
    "judge_lines": 64,
    "reply_tokens": 32,
    "held_out_fraction": 0.2,
    "min_lines": 20,
    "checkpoint_every": 20,
    "max_steps": 0,
    "compile": True,
    "seed": 0,
}
TINY = {
    "base_model": "tiny",
    "lora_r": 8,
    "lora_alpha": 16,
    "epochs": 1,
    "learning_rate": 1e-3,
    "tokens_per_step": 1024,
    "max_context": 512,
    "checkpoint_every": 2,
    "max_steps": 4,
    "compile": False,
    "judge_lines": 8,
    "reply_tokens": 8,
}
LOCAL = {
    "base_model": SMOLLM2,
    "family": "llama",
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_layers": 15,
    "epochs": 1,
    "learning_rate": 1e-3,
    "tokens_per_step": 768,
    "max_context": 1024,
    "description_words": 60,
    "checkpoint_every": 4,
    "max_steps": 8,
    "compile": False,
    "judge_lines": 24,
    "reply_tokens": 20,
}
"""The embedded default's preset (`stnlp demo`): the packaged SmolLM2-135M-Instruct on CPU,
sized by tokens (8 steps of 768) for a CPU budget, LoRA on the top 15 of its 30 layers (the
backward pass stops there): under 2 minutes per job on 2 cores (107-117 s measured; these
cores drift, 111-142 s a day earlier), held-out comparison included (docs/benchmarks.md,
"the embedded default on a CPU")."""


SEARCH = {
    "learning_rate": {"min": 5e-5, "max": 1e-3, "scale": "log"},
    "lora_r": {"values": [8, 16, 32]},
}
"""`stnlp tune chatbot-llama --objective heldout.value`: the speaker judge's score of the
adapter's held-out replies over these."""


def base_model(settings, job: str) -> str:
    """The hub model id a chatbot job fine-tunes (configurable per component)."""
    return settings.model_id(job, BASES[job][1])


@hookimpl
def stnlp_components(settings):
    """The LLaMA and Qwen character chatbots."""
    return [
        Component(job, f"Character chatbot on {BASES[job][2]}, LoRA fine-tuned") for job in BASES
    ]


@hookimpl
def stnlp_training_jobs(settings):
    """One LoRA fine-tuning job per base model, on a 24 GB GPU (g5.xlarge)."""
    return [
        JobSpec(
            name=job,
            component=job,
            entrypoint="stnlp.plugins.chatbot.train:train",
            evaluator="stnlp.plugins.chatbot.evaluate:evaluate",
            chat="stnlp.plugins.chatbot.session:open_chat",
            output_model=job,
            instance_type="g5.xlarge",
            gpu_count=1,
            spot=True,
            max_runtime_minutes=180,
            hyperparameters={**DEFAULTS, "family": family, "base_model": base_model(settings, job)},
            presets={"tiny": TINY, "local": LOCAL},
            search_space=SEARCH,
            input_datasets=("transcripts", "characters"),
            description=f"LoRA fine-tuning of {BASES[job][2]} as a character chatbot",
        )
        for job, (family, _, _) in BASES.items()
    ]


@hookimpl
def stnlp_gradio_tabs(settings):
    """The character chat tab (a ``gr.ChatInterface``)."""
    tab = "stnlp.plugins.chatbot.tab"
    return [
        TabSpec(
            "chatbot", "Chat", build=f"{tab}:build", model_source=f"{tab}:model_source", order=30
        )
    ]
