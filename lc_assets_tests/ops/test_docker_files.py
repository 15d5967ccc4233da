"""docker/: the compose file is valid Compose and has every service wired right, Dockerfiles are pinned and
signal-safe, and the Postgres instance config matches dagster.yaml. No Docker engine runs here, so the files
are checked as data (the compose file against the Compose Specification's JSON schema, vendored)."""

import copy
import json
import re
from pathlib import Path

import dagster as dg
import jsonschema
import pytest
import yaml

from lc_assets.defs.automation.jobs import CORPUS_INGEST_ASSETS, GENERATION_ASSETS, RULER_EVAL_ASSETS
from lc_assets.defs.automation.watched_folders import profile_run_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
SERVICES = {"postgres", "dagster_webserver", "dagster_daemon", "user_code", "vllm"}
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "compose_spec" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_has_the_services(compose):
    services = compose["services"]
    assert SERVICES <= set(services)
    gpu = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in gpu
    for name in ("dagster_webserver", "dagster_daemon", "user_code"):
        env = services[name]["environment"]
        assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME"} <= set(env), name
        assert env["DAGSTER_PG_PASSWORD"].startswith("${"), "credentials come from the environment"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    for name, svc in services.items():
        if "command" in svc:
            assert isinstance(svc["command"], list), f"{name}: exec-form command"
        if "build" in svc:
            assert (REPO / "docker" / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve().is_file()


def test_workspace_points_at_the_code_server(compose):
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] == "user_code" and grpc["host"] in compose["services"]
    cmd = (DOCKER / "Dockerfile.user_code").read_text()
    assert f'"-p", "{grpc["port"]}"' in cmd and '"-m", "lc_assets.definitions"' in cmd


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_dockerfile_lint(dockerfile):
    ins = _instructions(dockerfile)
    froms = [args for word, args in ins if word == "FROM"]
    assert froms, "no FROM"
    for image in froms:
        ref = image.split()[0]
        assert "@sha256:" in ref or re.search(r":v?\d+\.\d+", ref), f"{ref}: pin a versioned tag or digest"
        assert not ref.endswith(":latest")
    entry = [args for word, args in ins if word in ("ENTRYPOINT", "CMD")]
    assert entry, "no ENTRYPOINT/CMD"
    for args in entry:
        assert isinstance(json.loads(args), list), f"exec form (JSON array) so stop signals reach the process: {args}"
    for word, args in ins:
        if word == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                assert (REPO / src).exists(), f"COPY source {src} missing (build context is the repo root)"
        if word == "RUN" and "pip install" in args:
            for pkg in re.findall(r"(dagster[\w-]*)(==[\w.]+)?", args):
                assert pkg[1], f"{pkg[0]} unpinned in {dockerfile.name}"


def test_postgres_instance_config_matches_local(monkeypatch):
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    pg = yaml.safe_load((DOCKER / "dagster.postgres.yaml").read_text())
    for key in ("concurrency", "run_monitoring", "run_retries", "run_coordinator", "telemetry", "nux"):
        assert pg[key] == local[key], key
    creds = dict(pg["storage"]["postgres"]["postgres_db"])
    assert creds.pop("scheme") == "postgresql+psycopg2"  # the driver dagster-postgres installs
    assert all(isinstance(v, dict) and set(v) == {"env"} for v in creds.values()), "credentials from env only"


@pytest.mark.parametrize("assets", [CORPUS_INGEST_ASSETS, GENERATION_ASSETS, RULER_EVAL_ASSETS])
def test_compose_profile_validates(loaded_defs, assets):
    job = next(
        loaded_defs.resolve_job_def(name)
        for name in ("corpus_ingest_job", "generation_job", "ruler_eval_job")
        if {k.to_user_string() for k in loaded_defs.resolve_job_def(name).asset_layer.executable_asset_keys}
        == set(assets)
    )
    run_config = profile_run_config(str(DOCKER / "profile.compose.yaml"), assets)
    assert dg.validate_run_config(job, run_config)


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_compose_file_follows_the_compose_specification(compose, compose_validator):
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in compose_validator.iter_errors(compose)
    ]
    assert not errors, errors
    assert compose["name"]  # the specification's project name, which Compose v1 (Debian's docker-compose) rejects


@pytest.mark.parametrize(
    "break_it",
    [
        lambda c: c.update(servces={}),  # a misspelled top-level key
        lambda c: c["services"]["postgres"].update(restart_policy="always"),  # not a service key
        lambda c: c["services"]["vllm"].update(ports="8000:8000"),  # ports is a list
        lambda c: c["services"]["user_code"]["depends_on"]["postgres"].update(condition="when_ready"),
    ],
    ids=["top-level-typo", "unknown-service-key", "ports-not-a-list", "bad-depends-on-condition"],
)
def test_compose_schema_rejects_broken_files(compose, compose_validator, break_it):
    broken = copy.deepcopy(compose)
    break_it(broken)
    assert list(compose_validator.iter_errors(broken))


def test_helm_values_match_the_instance_config(loaded_defs):
    values = yaml.safe_load((DOCKER / "k8s" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["LC_ASSETS_EXECUTOR"] == "k8s"
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "lc_assets.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["tagConcurrencyLimits"] == local["concurrency"]["runs"]["tag_concurrency_limits"]
    assert queue["maxConcurrentRuns"] == local["concurrency"]["runs"]["max_concurrent_runs"]
    # the GPU routing the values rely on is on the generation op itself
    nodes = loaded_defs.resolve_job_def("generation_job").graph.node_defs
    op_tags = next(n for n in nodes if n.name == "generate_qa").tags
    k8s = op_tags["dagster-k8s/config"]
    k8s = json.loads(k8s) if isinstance(k8s, str) else k8s
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert k8s["container_config"]["resources"]["requests"]["cpu"] == "4"  # loop + engine + 2 judge workers
    assert k8s["pod_spec_config"]["node_selector"] == {"nvidia.com/gpu.present": "true"}
