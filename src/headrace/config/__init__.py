"""Pipeline files: typed models, loading and checks."""

from headrace.config.load import load_pipeline, parse_pipeline
from headrace.config.models import Pipeline, default_pipeline

__all__ = ["Pipeline", "default_pipeline", "load_pipeline", "parse_pipeline"]
