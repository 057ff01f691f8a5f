"""Privacy: removal of personal details, pseudonymised research exports, small-cell suppression.

Submodules (see docs/privacy.md):

- ``privacy.scrub``: ``scrub(lake)`` - irreversible removal of personal columns from the store;
- ``privacy.pseudonym``: ``Pseudonymizer``, ``load_secret`` - keyed HMAC-SHA256 pseudonyms;
- ``privacy.export``: ``export_table`` - anonymised / public files;
- ``privacy.suppress``: ``suppress``, ``suppress_crosstab``, ``merge_small``, ``protect`` - small cells.

IP -> country lives in ``edx_engine.geo``.
"""

from .pseudonym import Pseudonymizer, SecretError, load_secret, pseudonym

__all__ = ["Pseudonymizer", "SecretError", "load_secret", "pseudonym"]
