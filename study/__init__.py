"""PSPNet study harness: ablations, benchmarks and reports for the Pyramid Scene Parsing Network."""

__version__ = "0.1.0"
