"""Indicator models: definitions (Ibis, one place), the course registry, and builds on DuckDB / PostgreSQL.

    from edx_engine.models import build_duckdb, build_postgres, Params, MODELS
"""

from .build import BuildError, BuildResult, ModelResult, build_duckdb, build_postgres, read_model
from .definitions import MODELS, Params
from .registry import CourseEntry, RegistryError, load_registry

__all__ = ["BuildError", "BuildResult", "ModelResult", "build_duckdb", "build_postgres", "read_model", "MODELS",
           "Params", "CourseEntry", "RegistryError", "load_registry"]
