"""lc_assets: synthetic 1M-token-context training data and RULER evaluation as Dagster assets."""

import os

# Nothing is downloaded from a model or data hub at run time: hub names resolve from the local cache
# only, and a name that is not cached fails at once instead of retrying a network request for ~30 s.
# The libraries read these when first imported, so they are set here, before any of them is.
# An operator who wants downloads sets HF_HUB_OFFLINE=0 (setdefault keeps an explicit value).
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
