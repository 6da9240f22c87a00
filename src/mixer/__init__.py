"""mixer: declarative, reproducible instruction-tuning mixtures."""

__version__ = "0.1.0"
