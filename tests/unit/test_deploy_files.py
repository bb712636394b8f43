"""deploy/ checked against the code: compose, Kubernetes, NATS configs, Dockerfile, entry point.

No Docker engine runs here, so nothing is started; instead every name the files use is checked
against what exists: each AGORA_* variable is an Agora setting (or ``<setting>_FILE``, read by
deploy/entrypoint.sh), every secret comes from a secret reference and never a literal, every
command parses with Agora's own command line, every health check names a real endpoint, images
are consistent, and each NATS config passes ``nats-server -t`` with the pinned binary.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
import yaml
from fastapi.testclient import TestClient
from support.cluster import ROLES, inbox_prefix, password_variable, role_passwords

from agora.cli import app as cli_app
from agora.config import Settings, env_name
from agora.deploygen import COMPOSE, K8S_WORKERS, render_compose, render_k8s_workers
from agora.embedded import find_nats_server
from agora.registry import known_names
from agora.serve import service_names
from agora.web import __main__ as dashboard_main
from agora.web.api import create_app
from services.ingest.app import HEALTH_PATH

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {env_name(f) for f in Settings.__struct_fields__}
SECRET_FIELDS = (
    "nats_password",
    "nats_token",
    "database_url",
    "read_database_url",
    "moderator_tokens",
    "id_key",
)
SECRET_SETTINGS = {env_name(f) for f in SECRET_FIELDS}
AGORA_IMAGE_SERVICES = {"stream-init", "ingest", "moderation", "dashboard", "simulator"}


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # type: ignore[no-any-return]


def k8s_documents() -> list[dict[str, Any]]:
    """The rendered kustomization (kubectl kustomize) or, without kubectl, its resources."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run(
            [kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, check=True
        ).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]
    return docs


def nats_version() -> str:
    out = subprocess.run([str(find_nats_server()), "--version"], capture_output=True, text=True)
    return out.stdout.strip().rsplit("v", 1)[-1]


def check_command(argv: list[str]) -> None:
    """Parse ``argv`` as the container's command line; raise if it names nothing real."""
    if argv[:3] == ["python", "-m", "agora.web"]:
        dashboard_main.parser().parse_args(argv[3:])
        return
    assert argv[0] == "agora", argv
    command: click.Command = typer.main.get_command(cli_app)
    args = list(argv[1:])
    while isinstance(command, click.Group):
        name = args.pop(0)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"no command {name!r} in {argv}"
        command = sub
    context = command.make_context(argv[0], list(args))  # raises on an unknown option
    params = context.params
    if "names" in params:  # agora worker PROJECTION...
        assert set(params["names"] or []) <= set(known_names()), argv
    if command.name == "serve":
        assert params["name"] in service_names(), argv


def check_env(where: str, env: dict[str, Any], secrets: set[str] | None) -> None:
    """Each AGORA_* is a setting (secrets only by reference); each _FILE names a mounted secret."""
    for name, value in env.items():
        if not name.startswith("AGORA_"):
            continue
        base = name.removesuffix("_FILE")
        assert base in SETTINGS, f"{where}: {name} is not an Agora setting"
        if name.endswith("_FILE"):
            assert secrets is not None, f"{where}: {name}: no secrets mounted"
            match = re.fullmatch(r"/run/secrets/([a-z0-9_]+)", str(value))
            assert match and match[1] in secrets, f"{where}: {name}={value} is not a secret"
        elif isinstance(value, dict):
            assert "secretKeyRef" in value.get("valueFrom", {}), f"{where}: {name}"
        else:
            assert name not in SECRET_SETTINGS, f"{where}: secret {name} given as a literal"


def check_inbox_prefix(where: str, env: dict[str, Any]) -> None:
    """A process that connects as a NATS user reads replies under that user's own inbox prefix."""
    if "AGORA_NATS_USER" in env:
        user = env["AGORA_NATS_USER"]
        assert env.get("AGORA_NATS_INBOX_PREFIX") == inbox_prefix(user), where


# -- compose ------------------------------------------------------------------------------------


def test_compose_services_are_real_agora_processes() -> None:
    doc = compose()
    services = doc["services"]
    declared = set(doc["secrets"])
    for name, service in services.items():
        secrets = set(service.get("secrets", []))
        assert secrets <= declared, name
        check_env(name, service.get("environment", {}), secrets)
        check_inbox_prefix(name, service.get("environment", {}))
        if name.startswith("nats-"):
            for var, value in service["environment"].items():
                if var != "NATS_SERVER_NAME":
                    assert var.endswith("_FILE") and value.startswith("/run/secrets/"), var
            assert service["environment"]["NATS_SERVER_NAME"] == name
            continue
        if name == "postgres":
            assert "POSTGRES_PASSWORD" not in service["environment"]
            continue
        assert service["image"] == services["ingest"]["image"], name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        check_command(service["command"])
    workers = [n for n in services if n.startswith("worker-")]
    projections = {services[n]["command"][2] for n in workers}
    assert projections == set(known_names()), "every projection has its worker container"
    assert set(services) >= AGORA_IMAGE_SERVICES
    assert services["simulator"]["profiles"] == ["demo"]
    dashboard_env = services["dashboard"]["environment"]
    assert not [v for v in dashboard_env if "NATS" in v], "the dashboard needs no NATS"
    for secret in doc["secrets"].values():
        assert secret["file"].startswith("./secrets/")


def test_compose_nats_nodes_are_the_pinned_version_with_their_roles_passwords() -> None:
    doc = compose()
    nodes = {n: s for n, s in doc["services"].items() if n.startswith("nats-")}
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    for service in nodes.values():
        assert service["image"] == f"nats:{nats_version()}-alpine"
        wanted = {password_variable(r) + "_FILE" for r in ROLES}
        assert wanted <= set(service["environment"])
        assert "/etc/nats/nats.conf" in service["command"]
    users = {
        s["environment"]["AGORA_NATS_USER"]
        for s in doc["services"].values()
        if "AGORA_NATS_USER" in s.get("environment", {})
    }
    assert users <= set(ROLES)


def health_paths() -> dict[str, str]:
    doc = compose()
    out = {}
    for name, service in doc["services"].items():
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        found = re.search(r"http://127\.0\.0\.1:(\d+)(/[^' \"]*)", test)
        if found:
            out[name] = found[2].split("?")[0]
            if name not in ("nats-1", "nats-2", "nats-3"):
                assert found[1] in " ".join(service["command"]), f"{name}: port {found[1]}"
    return out


def test_compose_health_checks_point_at_real_endpoints(tmp_path: Path) -> None:
    paths = health_paths()
    assert paths["ingest"] == HEALTH_PATH
    assert paths["moderation"] == "/healthz"
    moderation_http = (ROOT / "services" / "moderation" / "http.py").read_text()
    assert '@app.get("/healthz")' in moderation_http
    dashboard = create_app(f"sqlite:///{tmp_path / 'none.db'}")
    with TestClient(dashboard) as client:  # an empty database reads as empty: 200
        assert client.get(paths["dashboard"]).status_code == 200
        assert client.get("/openapi.json").status_code == 200
    assert all(paths[n] == "/metrics" for n in paths if n.startswith("worker-"))
    assert all(paths[f"nats-{i}"] == "/healthz" for i in (1, 2, 3))


# -- Kubernetes ---------------------------------------------------------------------------------


def test_k8s_manifests_are_real_agora_processes() -> None:
    docs = k8s_documents()
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == 3 + len(known_names())
    assert "Job" in kinds
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    check_env("configmap", config["data"], None)
    assert config["data"]["AGORA_STREAM_REPLICAS"] == "3"
    images = set()
    workers = set()
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]
        for container in pod["spec"]["containers"]:
            images.add(container["image"])
            check_command(container["args"])
            env = {e["name"]: e.get("value", e) for e in container.get("env", [])}
            check_env(doc["metadata"]["name"], env, None)
            check_inbox_prefix(doc["metadata"]["name"], env)
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"] in (
                        HEALTH_PATH,
                        "/healthz",
                        "/api/communities",
                        "/openapi.json",
                        "/metrics",
                    )
            if container["args"][1] == "worker":
                workers.add(container["args"][2])
                notes = pod["metadata"]["annotations"]
                assert notes["prometheus.io/scrape"] == "true"
                port = container["args"][container["args"].index("--metrics-port") + 1]
                assert notes["prometheus.io/port"] == port
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert len(images) == 1, images
    assert workers == set(known_names())


def test_k8s_values_and_optional_files_parse() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    assert values["config"]["cluster"]["replicas"] == 3
    assert values["container"]["image"]["tag"] == f"{nats_version()}-alpine"
    env = values["container"]["env"]
    assert set(env) == {password_variable(r) for r in ROLES}
    assert all("secretKeyRef" in v["valueFrom"] for v in env.values())
    cnpg = yaml.safe_load((DEPLOY / "k8s" / "optional" / "postgres-cnpg.yaml").read_text())
    assert cnpg["spec"]["bootstrap"]["initdb"] == {
        **cnpg["spec"]["bootstrap"]["initdb"],
        "database": "agora",
        "owner": "agora",
    }


# -- generated from the registry ------------------------------------------------------------------

REGENERATE = ".venv/bin/python -m agora.deploygen  (or: make docs)"


def test_the_worker_manifests_are_generated_from_the_registry() -> None:
    names = known_names()
    compose_text = COMPOSE.read_text()
    assert compose_text == render_compose(compose_text, names), f"stale; run {REGENERATE}"
    assert K8S_WORKERS.read_text() == render_k8s_workers(names), f"stale; run {REGENERATE}"


def test_a_newly_registered_projection_gets_its_worker_set() -> None:
    names = [*known_names(), "toy_posts"]
    services = yaml.safe_load(render_compose(COMPOSE.read_text(), names))["services"]
    assert services["worker-toy-posts"]["command"][:3] == ["agora", "worker", "toy_posts"]
    assert services["worker-toy-posts"]["secrets"] == ["nats_worker_password", "agora_database_url"]
    deployments = list(yaml.safe_load_all(render_k8s_workers(names)))
    assert [d["metadata"]["name"] for d in deployments][-1] == "agora-worker-toy-posts"
    container = deployments[-1]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["agora", "worker", "toy_posts"]
    assert {e["name"] for e in container["env"]} >= {"AGORA_NATS_USER", "AGORA_DATABASE_URL"}


# -- NATS ---------------------------------------------------------------------------------------


def nats_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    env.update({password_variable(r): pw for r, pw in role_passwords().items()})
    env["NATS_SERVER_NAME"] = "nats-1"
    env.update(extra)
    return env


def test_nats_config_passes_the_pinned_servers_config_test() -> None:
    result = subprocess.run(
        [str(find_nats_server()), "--config", str(DEPLOY / "nats" / "nats.conf"), "-t"],
        env=nats_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout + result.stderr


@pytest.mark.parametrize("role", ROLES)
def test_nats_config_holds_no_password_itself(role: str) -> None:
    env = nats_env()
    del env[password_variable(role)]
    result = subprocess.run(
        [str(find_nats_server()), "--config", str(DEPLOY / "nats" / "nats.conf"), "-t"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and password_variable(role) in result.stderr


def test_every_nats_user_has_a_password_variable() -> None:
    text = (DEPLOY / "nats" / "accounts.conf").read_text()
    users = re.findall(r"\{user: ([a-z-]+), password: (\S+?)[,}]", text)
    assert sorted(u for u, _ in users) == sorted(ROLES)
    assert all(pw == "$" + password_variable(u) for u, pw in users)


# -- image and entry point ----------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_non_root_and_locked() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base[1])
    assert text.count("FROM ") == 2
    assert "-c requirements.lock" in text
    assert re.search(r"^USER 10001", text, re.M)
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert f"!{path.rstrip('/')}" in ignore or f"!{path}/" in ignore, path


def test_entrypoint_turns_secret_files_into_settings(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    env = {
        "PATH": os.environ["PATH"],
        "AGORA_NATS_PASSWORD_FILE": str(tmp_path / "pw"),
        "NATS_WORKER_PASSWORD_FILE": str(tmp_path / "pw"),
        "AGORA_NATS_USER": "worker",
    }
    script = str(DEPLOY / "entrypoint.sh")
    out = subprocess.run(
        ["sh", script, "sh", "-c", "env | grep -E '^(AGORA|NATS)_' | sort"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [
        "AGORA_NATS_PASSWORD=s3cret",
        "AGORA_NATS_USER=worker",
        "NATS_WORKER_PASSWORD=s3cret",
    ]
    env["AGORA_DATABASE_URL_FILE"] = str(tmp_path / "missing")
    failed = subprocess.run(["sh", script, "true"], env=env, capture_output=True, text=True)
    assert failed.returncode == 2 and "AGORA_DATABASE_URL_FILE" in failed.stderr


def test_make_secrets_writes_every_secret_compose_mounts(tmp_path: Path) -> None:
    script = tmp_path / "make-secrets.sh"
    shutil.copy(DEPLOY / "make-secrets.sh", script)
    subprocess.run(["sh", str(script)], check=True, capture_output=True)
    made = {p.name for p in (tmp_path / "secrets").iterdir()}
    wanted = {Path(s["file"]).name for s in compose()["secrets"].values()}
    assert wanted <= made
    url = (tmp_path / "secrets" / "agora_database_url").read_text().strip()
    assert shlex.quote(url) == url and url.startswith("postgresql+psycopg://agora:")


def test_every_yaml_file_passes_yamllint() -> None:
    """compose, k8s and chart values pass yamllint (rules in deploy/.yamllint.yaml)."""
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(DEPLOY / ".yamllint.yaml"))
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 8, files
    problems = [
        f"{path.relative_to(DEPLOY)}:{p.line}: {p.desc} ({p.rule})"
        for path in files
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert problems == []
