"""The chatbot plugin: character chatbots fine-tuned with LoRA."""

from plugins import hookimpl
from plugins.spec import Component


@hookimpl
def stnlp_components(settings):
    """The LLaMA and Qwen character chatbots."""
    return [
        Component("chatbot-llama", "Character chatbot on Llama-3.2-3B-Instruct, LoRA fine-tuned"),
        Component("chatbot-qwen", "Character chatbot on Qwen2.5-3B-Instruct, LoRA fine-tuned"),
    ]
