"""Names of the attributes icbench writes on an Optuna study, read by the search and the reports alike.

They live here, below both, so that `icbench.report` reads a stored study without importing
`icbench.search` (the layers in `pyproject.toml`).
"""

from __future__ import annotations

#: Study user attributes: the experiment fingerprint itself, its hash, and the first trial number it
#: vouches for (`icbench.search.fingerprint`).
FINGERPRINT_ATTR = "experiment_fingerprint"
HASH_ATTR = "experiment_hash"
FROM_TRIAL_ATTR = "fingerprint_from_trial"
#: What studies created before the experiment fingerprint recorded: the search space and the objectives.
LEGACY_ATTR = "fingerprint"
