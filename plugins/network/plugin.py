"""The network plugin: the character co-occurrence network from subtitles."""

from plugins import hookimpl
from plugins.spec import Component


@hookimpl
def stnlp_components(settings):
    """The character network."""
    return [Component("network-characters", "Character co-occurrence network from NER")]
