"""The classifier plugin: location classifier (fine-tuned) and theme classifier (zero-shot)."""

from plugins import hookimpl
from plugins.spec import Component


@hookimpl
def stnlp_components(settings):
    """The location and theme classifiers."""
    return [
        Component("classifier-location", "Location type classifier, fine-tuned on locations"),
        Component("classifier-theme", "Zero-shot theme scores per episode and window"),
    ]
