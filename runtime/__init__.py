"""The runtime: settings, data loaders, object store, model registry, runs and backends."""
