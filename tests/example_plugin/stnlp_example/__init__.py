"""An example third-party plugin for the Stranger Things NLP suite."""
