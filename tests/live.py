"""Real local servers for integration tests (importable as ``live``): `bentoml serve`, Prometheus, bounded traffic.

Every wait is a deadline with polling, never a sleep-and-hope; processes run in their own session and are stopped
by process group. Two `bentoml serve` must not share a BENTOML_HOME (`own_home`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from processes import serve_command
from processes import stop_group as stop  # what every test that starts servers uses

REPO = Path(__file__).resolve().parents[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held together while chosen: bentoml binds with SO_REUSEPORT, so two
    servers given the same port would silently share it)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def wait(check: Callable, what: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` (and the log tail) at the deadline
    or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if value := check():
                return value
        except OSError:
            pass
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.is_file() else ""
    pytest.fail(f"{what} not reached within {timeout:.0f} s\n{tail}")


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        pytest.fail(
            "the Prometheus server is not installed: `apt-get install -y prometheus` (Debian/Ubuntu; "
            "`make test-integration` installs it), or put a `prometheus` binary (2.x) on PATH"
        )
    return found


def own_home(home: Path, store: Path | None = None) -> Path:
    """A BENTOML_HOME of its own over the model store ``store`` [default: $BENTOML_HOME's]: bentoml serve keeps its
    Prometheus multiprocess files in BENTOML_HOME (and wipes them at start), so servers sharing one would mix their
    metrics."""
    home.mkdir()
    (home / "models").symlink_to(Path(store or os.environ["BENTOML_HOME"]) / "models")
    return home


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 300) -> None:
        wait(lambda: get(f"{self.url}/readyz")[0] == 200, f"{self.name} ready", timeout, self.proc, self.log)


def start_server(
    name: str, port: int, home: Path, env: Mapping[str, str], faults: Mapping[str, str] | None = None
) -> Server:
    """`bentoml serve` the HLLM service on loopback ``port`` with BENTOML_HOME ``home`` (see `own_home`) and
    ``env`` (HLLM_MODEL, HLLM_FEAST_HOME...); ``faults`` (HLLM_FAULT_*) switch fault injection on."""
    log = home.parent / f"{name}.server.txt"
    # Tests driving more concurrent clients than a worker admits by default (8) test other things; the admission
    # limit has its own test (tests/integration/test_service.py), so these servers admit 64.
    full = {"HLLM_MAX_IN_FLIGHT": "64", **os.environ, **env, "BENTOML_HOME": str(home), **(faults or {})}
    if faults:
        full["HLLM_FAULT_INJECTION"] = "tests-only"
    proc = subprocess.Popen(
        serve_command(port),
        env=full,
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(name, port, proc, log)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen
    log: Path


def start_prometheus(binary: str, root: Path, targets: Mapping[str, int], namespace: str) -> Prometheus:
    """A Prometheus on a free loopback port scraping each ``targets`` port every second, labelled as Argo's canary
    pods would be (``namespace``, ``rollouts_pod_template_hash`` = the target's name); returns once it is ready."""
    root.mkdir(parents=True, exist_ok=True)
    static = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": namespace, "rollouts_pod_template_hash": name}}
        for name, port in targets.items()
    ]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "hllm", "metrics_path": "/metrics", "static_configs": static}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,), log = free_ports(1), root / "prometheus.txt"
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: get(f"{url}/-/ready")[0] == 200, "Prometheus ready", 120, proc, log)
    except BaseException:
        stop(proc)
        raise
    return Prometheus(url, proc, log)


def recommend(port: int, user: str, timeout: float = 60) -> tuple[int, dict]:
    """POST /recommend for ``user`` (k=5): the status and the JSON answer ({} for an error answer)."""
    body = json.dumps({"user_id": user, "k": 5}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/recommend", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def drive(port: int, users: list[str], requests: int, clients: int) -> list[int]:
    """``requests`` /recommend calls (users in turn) from ``clients`` threads; their statuses."""
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda i: recommend(port, users[i % len(users)])[0], range(requests)))


def scraped(prometheus: Callable, metric: str, namespace: str, server: str, at_least: int) -> bool:
    """Whether Prometheus holds a /recommend ``metric`` of ``server`` that reached ``at_least``."""
    selector = f'namespace="{namespace}", rollouts_pod_template_hash="{server}", endpoint="/recommend"'
    found = prometheus(f"sum({metric}{{{selector}}})")
    return bool(found) and found[0] >= at_least
