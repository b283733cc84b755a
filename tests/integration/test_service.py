"""The BentoML service on loopback: a real ``bentoml serve`` over a trained model and a real Feast store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import pytest
from processes import free_port, register_tiny_model, serve_command, stop_group

from hllm_feature_repo.store import sync

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, tag: str, feast_home: Path, log: Path, env: dict | None = None) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "HLLM_MODEL": tag,
            "HLLM_FEAST_HOME": str(feast_home),
            "HLLM_REQUEST_LOG": str(log),
            **(env or {}),
        }
        command = serve_command(self.port)
        self.output = log.with_suffix(".server.txt")
        self.proc = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=self.output.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 90) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if self.get("/readyz")[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return r.status, r.read().decode()

    def post(self, path: str, body, raw: bytes | None = None) -> tuple[int, dict | list | str]:
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
            return exc.code, text

    def stop(self) -> None:
        """Stop the server and its worker process (its own process group)."""
        stop_group(self.proc)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A tiny HLLM trained on synthetic data, registered in the BentoML store, its histories in Feast."""
    root = tmp_path_factory.mktemp("service")
    tag, dataset = register_tiny_model(root, "service-test", epochs=2)
    sync(dataset, root / "feast", history_length=50)
    return tag, root, dataset


@pytest.fixture(scope="module")
def server(deployed):
    tag, root, _ = deployed
    running = Server(tag, root / "feast", root / "requests.jsonl")
    assert running.wait_ready(), running.output.read_text()[-3000:]
    yield running
    running.stop()


def _ids(response: dict) -> list[str]:
    return [row["item_id"] for row in response["items"]]


def test_known_user_gets_k_unseen_items(server, deployed) -> None:
    _, _, dataset = deployed
    user = dataset.interactions["user_id"].iloc[0]
    seen = set(dataset.interactions.loc[dataset.interactions["user_id"] == user, "item_id"])
    status, body = server.post("/recommend", {"user_id": user, "k": 5})
    assert status == 200 and len(body["items"]) == 5 and body["fallback"] is None
    assert not seen & set(_ids(body))


def test_unknown_user_gets_the_flagged_popularity_fallback(server) -> None:
    status, body = server.post("/recommend", {"user_id": "never-seen", "k": 4})
    assert status == 200 and body["fallback"] == "popularity" and len(body["items"]) == 4


def test_an_event_changes_the_next_recommendation(server, deployed) -> None:
    _, _, dataset = deployed
    user = dataset.interactions["user_id"].iloc[1]
    before = server.post("/recommend", {"user_id": user, "k": 10, "exclude_seen": True})[1]
    clicked = _ids(before)[0]
    assert server.post("/events", {"user_id": user, "item_id": clicked})[0] == 200
    after = server.post("/recommend", {"user_id": user, "k": 10, "exclude_seen": True})[1]
    assert clicked not in _ids(after) and _ids(after) != _ids(before)


def test_upserted_item_is_findable_and_recommendable(server) -> None:
    item = {"item_id": "brand-new", "title": "Quantum titanium bicycle bell", "tag": "cycling", "description": "loud"}
    status, body = server.post("/upsert_items", {"items": [item]})
    assert status == 200 and body["added"] == 1
    status, similar = server.post("/similar_items", {"text": item, "k": 3})
    assert status == 200 and _ids(similar)[0] == "brand-new"
    status, ranked = server.post("/recommend", {"history": ["brand-new"], "k": 3})
    assert status == 200 and len(ranked["items"]) == 3 and "brand-new" not in _ids(ranked)
    assert server.post("/events", {"user_id": "cold-user", "item_id": "brand-new"})[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "raw", "needle"),
    [
        ("/recommend", {"history": ["i00001"], "k": 0}, None, "greater than or equal"),
        ("/recommend", {"history": ["i00001"], "k": 5000}, None, "less than or equal"),
        ("/recommend", {"history": ["i00001"] * 1001}, None, "at most 1000"),
        ("/recommend", {"user_id": 7}, None, "valid string"),
        ("/recommend", {"history": ["i00001"], "k": "5"}, None, "valid integer"),
        ("/recommend", {}, None, "exactly one of user_id or history"),
        ("/recommend", {"user_id": "u", "history": []}, None, "exactly one of user_id or history"),
        ("/similar_items", {}, None, "exactly one of item_id or text"),
        ("/upsert_items", {"items": []}, None, "at least 1"),
        ("/recommend", None, b"{not json", "json"),
    ],
)
def test_invalid_requests_get_400_with_a_message_and_the_server_stays_up(server, path, body, raw, needle) -> None:
    status, text = server.post(path, body, raw)
    assert status == 400, (status, text)
    assert needle.lower() in json.loads(text)["error"].lower() + str(json.loads(text).get("detail", "")).lower()
    assert server.get("/readyz")[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/recommend", {"history": ["i00001", "nope"]}, 404, "history[1]: unknown item id 'nope'"),
        ("/recommend_batch", {"histories": [["i00001"], ["nope"]]}, 404, "histories[1][0]: unknown item id 'nope'"),
        ("/similar_items", {"item_id": "nope"}, 404, "item_id: unknown item id 'nope'"),
        ("/events", {"user_id": "u", "item_id": "nope"}, 404, "item_id: unknown item id 'nope' (upsert it first)"),
        (
            "/upsert_items",
            {"items": [{"item_id": "a"}, {"item_id": "a"}]},
            409,
            "items[1].item_id: 'a' is also items[0]'s",
        ),
    ],
)
def test_unknown_ids_get_404_and_conflicts_409_naming_the_field(server, path, body, status, message) -> None:
    answered, text = server.post(path, body)
    assert (answered, json.loads(text)) == (status, {"error": message})


def test_a_body_over_the_limit_or_not_json_is_refused_before_the_api(server) -> None:
    import http.client

    # Only the headers: the server answers 413 from Content-Length before reading a byte of the body (a client
    # still sending a big body may see the connection closed under it instead of the answer).
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/recommend")
    connection.putheader("content-type", "application/json")
    connection.putheader("content-length", str(2 << 20))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413 and "request body over" in json.loads(answer.read())["error"]
    connection.close()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/recommend", data=b"--x--", headers={"content-type": "multipart/form-data"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 415 and "application/json" in json.loads(refused.value.read())["error"]


def test_metrics_and_openapi(server) -> None:
    assert "bentoml_service_request" in server.get("/metrics")[1]
    paths = json.loads(server.get("/docs.json")[1])["paths"]
    assert {"/recommend", "/similar_items", "/upsert_items", "/events"} <= set(paths)


def test_answers_with_known_ids_match_the_documented_schemas(server) -> None:
    """The fuzzer below rarely guesses a catalogue id: the 200 answers behind known ids are checked here."""
    from jsonschema import Draft202012Validator

    doc = json.loads(server.get("/docs.json")[1])
    calls = [
        ("/recommend", {"history": ["i00001", "i00002"], "k": 3}),
        ("/recommend", {"user_id": "never-seen", "k": 2}),
        ("/recommend_batch", {"histories": [["i00001"], ["i00002", "i00003"]]}),
        ("/similar_items", {"item_id": "i00001", "k": 3}),
        ("/events", {"user_id": "schema-user", "item_id": "i00001", "timestamp": 1_700_000_000}),
        ("/upsert_items", {"items": [{"item_id": "schema-item", "title": "a lamp"}]}),
    ]
    for path, body in calls:
        status, answer = server.post(path, body)
        schema = doc["paths"][path]["post"]["responses"][str(status)]["content"]["application/json"]["schema"]
        Draft202012Validator({**schema, "components": doc["components"]}).validate(answer)
        assert status == 200, (path, answer)


def test_the_openapi_document_is_true_under_schemathesis(deployed, tmp_path: Path) -> None:
    """Every operation of the served document, fuzzed by schemathesis (positive and negative data, every check):
    each answer is declared with its status, headers and body schema, no schema-valid request is refused, no
    schema-invalid one accepted, and nothing answers 5xx. The server gets its own store: the fuzzer upserts."""
    tag, _, dataset = deployed
    sync(dataset, tmp_path / "feast", history_length=50)
    running = Server(tag, tmp_path / "feast", tmp_path / "requests.jsonl")
    try:
        assert running.wait_ready(), running.output.read_text()[-3000:]
        report, events = tmp_path / "schemathesis.json", tmp_path / "schemathesis.ndjson"
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"http://127.0.0.1:{running.port}/docs.json",
        ]
        command += ["--checks", "all", "--max-examples", "200", "--seed", "20261202", "--workers", "1"]
        command += ["--phases", "examples,coverage,fuzzing", "--generation-database", "none", "--no-color"]
        command += ["--request-timeout", "30", "--report", "json,ndjson", "--report-json-path", str(report)]
        command += ["--report-ndjson-path", str(events)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        summary = json.loads(report.read_text())
    finally:
        running.stop()
    assert done.returncode == 0 and summary["failures"] == [] and summary["errors"] == [], done.stdout[-6000:]
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 9
    fuzzed = {}  # fuzzing cases per operation, from the event stream
    for line in events.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if finished and finished["phase"] == "fuzzing":
            fuzzed[finished["recorder"]["label"]] = len(finished["recorder"].get("cases", {}))
    apis = ("/recommend", "/recommend_batch", "/similar_items", "/upsert_items", "/events")
    assert all(fuzzed.get(f"POST {path}", 0) >= 200 for path in apis), fuzzed  # GET probes take no input: 1 each


def _post_answer(port: int, path: str, body: dict):
    """(status, headers (case-insensitive), JSON body) of a POST, whatever the status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def test_an_overloaded_server_sheds_with_503_and_retry_after_and_keeps_every_accepted_event(deployed, tmp_path) -> None:
    """Two workers holding one request each (a 5 s injected latency keeps them busy): of 8 concurrent events at
    least 6 are shed at once with the documented 503; every event answered 200 is in the store, no shed one is."""
    import psutil

    from hllm_feature_repo.store import online_histories, open_store

    tag, root, dataset = deployed
    overload = {"HLLM_WORKERS": "2", "HLLM_MAX_IN_FLIGHT": "1", "HLLM_FAULT_INJECTION": "tests-only"}
    running = Server(
        tag, root / "feast", tmp_path / "requests.jsonl", env={**overload, "HLLM_FAULT_LATENCY_MS": "5000"}
    )
    try:
        assert running.wait_ready(), running.output.read_text()[-3000:]
        workers = [p for p in psutil.Process(running.proc.pid).children(recursive=True) if "python" in p.name()]
        assert len(workers) == 2
        item = dataset.interactions["item_id"].iloc[0]
        bodies = [{"user_id": "shed-test-user", "item_id": item, "timestamp": 1_700_000_000 + j} for j in range(8)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: _post_answer(running.port, "/events", body), bodies))
        statuses = sorted(status for status, _, _ in answers)
        assert set(statuses) <= {200, 503} and statuses.count(503) >= 6 and 200 in statuses, statuses
        for status, headers, body in answers:
            if status == 503:
                assert int(headers["Retry-After"]) >= 1 and "overloaded" in body["error"]
        (row,) = online_histories(open_store(root / "feast"), ["shed-test-user"])
        assert row["length"] == statuses.count(200)
        assert running.get("/readyz")[0] == 200
    finally:
        running.stop()


def test_requests_are_logged_for_drift_monitoring(server, deployed) -> None:
    _, root, _ = deployed
    server.post("/recommend", {"history": ["i00002"], "k": 2})
    kinds = {json.loads(line)["kind"] for line in (root / "requests.jsonl").read_text().splitlines()}
    assert {"recommend", "event"} <= kinds


def test_restart_serves_identical_results(deployed) -> None:
    tag, root, _ = deployed
    results = []
    for attempt in range(2):
        running = Server(tag, root / "feast", root / f"restart-{attempt}.jsonl")
        try:
            assert running.wait_ready(), running.output.read_text()[-2000:]
            results.append(running.post("/recommend", {"history": ["i00003", "i00004"], "k": 10})[1])
        finally:
            running.stop()
    assert results[0] == results[1]


def test_corrupt_or_missing_model_never_becomes_ready_and_says_why(deployed, tmp_path: Path) -> None:
    _, root, _ = deployed
    with bentoml.models.create("service-broken") as broken:
        (Path(broken.path) / "config.json").write_text("{ not json")
        (Path(broken.path) / "item_ids.json").write_text("[]")
    for tag in (str(broken.tag), "service-missing:latest"):
        running = Server(tag, root / "feast", tmp_path / f"{tag.replace(':', '-')}.jsonl")
        try:
            # BentoML keeps its arbiter up and retries the worker; it is never ready and logs the cause.
            assert not running.wait_ready(timeout=45)
            assert f"cannot load model '{tag}'" in running.output.read_text()
        finally:
            running.stop()


def test_hllm_serve_refuses_a_corrupt_model_before_starting(deployed) -> None:
    from typer.testing import CliRunner

    from hllm.cli import app

    with bentoml.models.create("serve-broken") as broken:
        (Path(broken.path) / "config.json").write_text("{ not json")
    result = CliRunner().invoke(app, ["serve", "--model", str(broken.tag)])
    assert result.exit_code == 2 and "cannot load model" in result.output
    result = CliRunner().invoke(app, ["serve", "--model", "serve-missing:latest"])
    assert result.exit_code == 2 and "no model 'serve-missing:latest'" in result.output


def test_bento_builds_from_the_repo(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "."], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    bento = (
        tmp_path / "home" / "bentos" / "hllm" / (tmp_path / "home" / "bentos" / "hllm" / "latest").read_text().strip()
    )
    assert (bento / "src" / "serving" / "service.py").is_file()
    assert (bento / "src" / "feature_repo" / "features.py").is_file()
    assert not list((bento / "src").rglob("test_*.py"))
