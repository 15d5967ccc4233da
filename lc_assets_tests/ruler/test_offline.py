"""Nothing is fetched from a hub at run time: a dataset name that is not cached fails at once, without retries."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _run_fresh(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # a fresh interpreter: the hub libraries read the offline switches when first imported
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


def test_uncached_hub_dataset_is_unavailable_without_network_retries(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    proc = _run_fresh(
        """
        import os
        from lc_assets.lib.ruler.qa import QaUnavailable, load_qa_dataset
        result = load_qa_dataset("squad", "some-org/not-cached-squad")
        assert isinstance(result, QaUnavailable), result
        print(os.environ["HF_HUB_OFFLINE"], result.reason)
        """,
        env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1 could not load squad from 'some-org/not-cached-squad'")
    # huggingface_hub's backoff prints "Retrying in 1s [Retry 1/5]" for every request it sends
    assert "Retry" not in proc.stderr and "huggingface.co" not in proc.stderr


def test_an_explicit_setting_wins(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HF_HUB_OFFLINE"] = "0"
    proc = _run_fresh(
        "import os, lc_assets; print(os.environ['HF_HUB_OFFLINE'], os.environ['HF_DATASETS_OFFLINE'])", env
    )
    assert proc.stdout.split() == ["0", "1"]
