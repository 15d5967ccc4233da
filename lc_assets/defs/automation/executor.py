"""The executor of every job of the code location, chosen per deployment by $LC_ASSETS_EXECUTOR.

(unset)       Dagster's default: multiprocess on this machine (`dagster dev`, docker compose)
in_process    one process (debugging)
k8s           dagster-k8s's k8s_job_executor: one pod per step, GPU steps on GPU nodes through the
              `dagster-k8s/config` op tags of generate_qa (docs/kubernetes.md)
"""

import os

import dagster as dg

EXECUTOR_ENV = "LC_ASSETS_EXECUTOR"


def executor_from_env() -> dg.ExecutorDefinition | None:
    choice = os.environ.get(EXECUTOR_ENV, "").strip()
    if choice in ("", "multiprocess"):
        return None
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise ImportError(f"{EXECUTOR_ENV}=k8s needs dagster-k8s: pip install 'dagster-k8s==0.29.27'") from exc
        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={choice!r}: expected one of '', multiprocess, in_process, k8s")


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=executor_from_env())
