"""The monitoring dashboard: a static, offline, multilingual site built from the indicator models.

    from edx_engine.dashboard import build_site
    result = build_site(lake, "site/", lang="es", public=False)
"""

from .build import DashboardError, SiteResult, build_site, check_models
from .labels import LANGS, apply_labels, label

__all__ = ["DashboardError", "SiteResult", "build_site", "check_models", "LANGS", "apply_labels", "label"]
