"""Test-only support: datasets in native layouts, tiny random models. Benchmarks import it too."""
