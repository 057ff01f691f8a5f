"""Deterministic generator of realistic synthetic edX research data deliveries.

    from edx_engine.synthetic import SyntheticConfig, generate, Manifest
    manifest = generate(Path("out"), SyntheticConfig(org="IDBx", seed=0))
"""

from .config import CourseInfo, Manifest, SyntheticConfig
from .core import generate, gpg_encrypt

__all__ = ["SyntheticConfig", "generate", "Manifest", "CourseInfo", "gpg_encrypt"]
