"""compose.yaml and deploy/haproxy.cfg, the deployment for a school (issue 14), checked
for what they promise: Docker is not available here, so this reads them (PyYAML, with
compose's ``${VAR:-default}`` interpolation) and runs ``haproxy -c`` on the proxy's file.
The running deployment (the same proxy file, two app servers, PostgreSQL) is
tests/test_browser_multi.py's.

- PostgreSQL with a named volume; two or more app servers built from this repository's
  Dockerfile, every one with the same ``METAREP_DB_URL``, which names the postgres
  service with its user, password and database (for the default and for a chosen
  password);
- the proxy mounts deploy/haproxy.cfg, whose backend names each app server (and no
  other) on the port the Dockerfile exposes, with cookie stickiness, WebSocket-long
  timeouts and health checks on Streamlit's /_stcore/health;
- the optional Ray head (profile ``ray``) runs the project's image with Ray's client
  server on the port the README's ``METAREP_RAY_ADDRESS`` names.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

try:
    from multi_harness import HAPROXY_CFG, STICKY_COOKIE, haproxy_bin, render_haproxy_cfg, template_servers
except ImportError:  # tests/ as a package
    from tests.multi_harness import HAPROXY_CFG, STICKY_COOKIE, haproxy_bin, render_haproxy_cfg, template_servers

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
APP_PORT = 8501
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}")


def interpolate(value, env: dict):
    """Compose's ``${NAME}`` / ``${NAME:-default}`` in every string of ``value``."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


def compose(env: dict | None = None) -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})


def app_servers(spec: dict) -> dict:
    """The services that run the app: built from this repository, not in a profile."""
    return {name: s for name, s in spec["services"].items()
            if s.get("build") in (".", "./") and not s.get("profiles") and "command" not in s}


def test_postgres_keeps_its_data_in_a_named_volume():
    spec = compose()
    volumes = spec["services"]["postgres"]["volumes"]
    named = [v.split(":")[0] for v in volumes if v.split(":")[1] == "/var/lib/postgresql/data"]
    assert named and named[0] in spec["volumes"], volumes
    assert spec["services"]["postgres"]["healthcheck"]["test"][1] == "pg_isready"


@pytest.mark.parametrize("env", [{}, {"METAREP_DB_PASSWORD": "s3cret"}])
def test_every_app_server_uses_the_same_database_the_postgres_service_serves(env):
    from sqlalchemy.engine import make_url
    spec = compose(env)
    servers = app_servers(spec)
    assert len(servers) >= 2, list(spec["services"])
    assert (ROOT / "Dockerfile").is_file()  # what `build: .` builds
    urls = {s["environment"]["METAREP_DB_URL"] for s in servers.values()}
    assert len(urls) == 1, urls
    url, pg = make_url(urls.pop()), spec["services"]["postgres"]["environment"]
    assert (url.get_backend_name(), url.host, url.port) == ("postgresql", "postgres", 5432)
    assert (url.username, url.password, url.database) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"],
                                                          pg["POSTGRES_DB"])
    if env:
        assert url.password == env["METAREP_DB_PASSWORD"]
    for s in servers.values():
        assert s["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert s["environment"]["METAREP_RAY_ADDRESS"] == ""  # the local pool unless the ray profile is on


def test_the_proxy_names_each_app_server_and_keeps_a_browser_on_one():
    spec = compose()
    proxy = spec["services"]["proxy"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in proxy["volumes"]}
    # where the official image reads its configuration
    assert mounted["./deploy/haproxy.cfg"] == "/usr/local/etc/haproxy/haproxy.cfg"
    assert ROOT / "deploy" / "haproxy.cfg" == HAPROXY_CFG and proxy["image"].startswith("haproxy:")
    cfg = HAPROXY_CFG.read_text()
    servers = app_servers(spec)
    assert template_servers(cfg) == {name: f"{name}:{APP_PORT}" for name in servers}
    assert f"EXPOSE {APP_PORT}" in (ROOT / "Dockerfile").read_text()
    assert set(proxy["depends_on"]) == set(servers)
    published = proxy["ports"][0].rsplit(":", 1)[1]
    assert re.search(rf"^\s*bind :{published}$", cfg, re.MULTILINE), (published, cfg)
    assert re.search(rf"^\s*cookie {STICKY_COOKIE} insert indirect nocache", cfg, re.MULTILINE)
    assert re.search(r"^\s*http-check send meth GET uri /_stcore/health$", cfg, re.MULTILINE)
    for name in servers:  # each server's cookie value is its name, and it is health-checked
        assert re.search(rf"^\s*server {name} \S+ cookie {name} check$", cfg, re.MULTILINE), name
    assert re.search(r"^\s*option redispatch$", cfg, re.MULTILINE)  # a gone server's browsers move on
    timeouts = dict(re.findall(r"^\s*timeout (tunnel|client|server) (\S+)$", cfg, re.MULTILINE))
    assert timeouts == {"tunnel": "1h", "client": "1h", "server": "1h"}  # a session's WebSocket


def test_the_proxy_config_passes_haproxy_check():
    # Its names (app1, app2) resolve only in the compose network: checked in a network
    # namespace with loopback only, so the lookup leaves nothing (an unresolved server is
    # disabled with a warning, which the file allows so the proxy can start first).
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is missing")
    done = subprocess.run(["unshare", "-n", haproxy_bin(), "-c", "-f", str(HAPROXY_CFG)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Configuration file is valid" in done.stdout + done.stderr, \
        done.stdout + done.stderr


def test_the_tests_render_the_deployments_proxy_file_changing_only_addresses():
    cfg = HAPROXY_CFG.read_text()
    rendered = render_haproxy_cfg(cfg, "127.0.0.1:9000", {"app1": "127.0.0.1:9001", "app2": "127.0.0.1:9002"})
    assert template_servers(rendered) == {"app1": "127.0.0.1:9001", "app2": "127.0.0.1:9002"}
    changed = {line.strip() for line in set(rendered.splitlines()) ^ set(cfg.splitlines())}
    assert all(line.startswith(("bind ", "server ")) for line in changed), changed
    assert "server app1 127.0.0.1:9001 cookie app1 check" in rendered


def test_the_optional_ray_head_runs_the_projects_image_where_the_readme_says():
    head = compose()["services"]["ray-head"]
    assert head["profiles"] == ["ray"] and head["build"] == "."
    command = head["command"].split()
    assert command[:4] == ["ray", "start", "--head", "--block"]
    port = command[command.index("--ray-client-server-port") + 1]
    assert f"METAREP_RAY_ADDRESS=ray://ray-head:{port}" in (ROOT / "README.md").read_text()
    assert f"METAREP_RAY_ADDRESS=ray://ray-head:{port}" in COMPOSE.read_text()
    assert head["environment"]["METAREP_RAY_ADDRESS"] == ""  # the head does not submit to itself
