"""esremote: move Elasticsearch remote clusters from the certificate model to API-key security."""

__version__ = "0.1.0"
