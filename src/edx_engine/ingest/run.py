"""compatibility alias; import from edx_engine.pipeline.import_run"""

from ..pipeline.import_run import COMMIT_WAIT_SECONDS, commit_wait_seconds, import_paths  # noqa: F401
