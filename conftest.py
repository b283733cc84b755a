"""Test setup for every test folder (tests/, components/, feature_repo/): offline, no usage telemetry."""

import os

# Tests never reach a hub and never report usage, whatever the caller's environment says.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "FEAST_USAGE": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[_key] = _value

# Tests never write to the user's BentoML store (~/bentoml): one throwaway store per test session.
if "PYTEST_BENTOML_HOME_SET" not in os.environ:
    import tempfile

    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="hllm-test-bentoml-")
    os.environ["PYTEST_BENTOML_HOME_SET"] = "1"
