"""Serving: a strict request model from the schema, one feature path, and a real `bentoml serve` over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from conftest import PROJECT, run
from pydantic import ValidationError
from support.probes import PROBE_PATH, PROBED_ENTRY, STALL_ID, STALL_S
from support.tiny import tiny_model

from {{ cookiecutter.package_name }}.data.rows import COLUMN_TYPES
from {{ cookiecutter.package_name }}.data.schema import ID_COLUMN, LABEL_COLUMN, TIME_COLUMN, RowSchema
from {{ cookiecutter.package_name }}.deploy.checks import wait_ready
from {{ cookiecutter.package_name }}.deploy.runtime import free_ports
from {{ cookiecutter.package_name }}.evaluation.evaluate import evaluate
from {{ cookiecutter.package_name }}.monitoring.record import SCORE_COLUMN
from {{ cookiecutter.package_name }}.release.package import request_body
from {{ cookiecutter.package_name }}.serving import SHADOW_HEADER
from {{ cookiecutter.package_name }}.serving.api import (
    SCHEMA_COLUMNS,
    SERVE_FILE,
    Transaction,
    _constraints,
    load_serve_settings,
    request_model,
    to_columns,
)
from {{ cookiecutter.package_name }}.serving.service import PromptTimeout, score_off_loop_if_large
from {{ cookiecutter.package_name }}.training.preprocessing import Preprocessor

ROW_CAP = 1000
# The served prediction's score field, as the dataset names it (conf/dataset `response`).
SCORE = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))["dataset"]["response"]["score"]


def body(golden: pd.DataFrame, rows: int = 3) -> dict[str, Any]:
    return request_body(golden.head(rows))


def validate(request: dict[str, Any], max_rows: int = 10) -> Any:
    """As the service parses bodies: from JSON bytes, strictly."""
    return request_model(max_rows).model_validate_json(json.dumps(request))


def first_column(kind: str, where: Callable[[str], bool] = lambda name: True) -> str | None:
    """The first request column of a numpy kind (the dataset decides which exist), the id aside."""
    return next((n for n, k in COLUMN_TYPES.items() if k == kind and n != ID_COLUMN and where(n)), None)


def lower_bound(name: str) -> float | None:
    constraints = _constraints(SCHEMA_COLUMNS[name])[1]
    return constraints.get("gt", constraints.get("ge"))


def closed(name: str) -> bool:
    return any(check.name == "isin" for check in SCHEMA_COLUMNS[name].checks)


FLOAT, INT, BOOL = first_column("float64"), first_column("int64"), first_column("bool")
BOUNDED = first_column("float64", lambda name: lower_bound(name) is not None) or first_column(
    "int64", lambda name: lower_bound(name) is not None
)
CATEGORY = first_column("object", closed)
NUMBER = FLOAT or INT  # a number every dataset's request has: a column the model reads
# Each kind of bad row the schema of this dataset can have, spoiling the column of that kind (by role, not name).
BAD_ROWS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "missing_field": (lambda r: r.pop(next(n for n in COLUMN_TYPES if n != ID_COLUMN)), "missing"),
    "too_long_id": (lambda r: r.update({ID_COLUMN: "x" * 10_000}), "string_too_long"),
    "extra_field": (lambda r: r.update({LABEL_COLUMN: 1}), "extra_forbidden"),
}
if FLOAT:
    BAD_ROWS["string_for_float"] = (lambda r: r.update({FLOAT: "12.5"}), "float_type")
if INT:
    BAD_ROWS["string_for_int"] = (lambda r: r.update({INT: "3"}), "int_type")
    BAD_ROWS["float_for_int"] = (lambda r: r.update({INT: 3.5}), "int_type")
if BOOL:
    BAD_ROWS["yes_for_bool"] = (lambda r: r.update({BOOL: "yes"}), "bool_type")
    BAD_ROWS["off_for_bool"] = (lambda r: r.update({BOOL: "off"}), "bool_type")
    BAD_ROWS["one_for_bool"] = (lambda r: r.update({BOOL: 1}), "bool_type")
if BOUNDED:
    BAD_ROWS["out_of_range"] = (lambda r: r.update({BOUNDED: lower_bound(BOUNDED) - 4}), "greater_than")
if CATEGORY:
    BAD_ROWS["unknown_category"] = (lambda r: r.update({CATEGORY: "never-seen-value"}), "literal_error")
if TIME_COLUMN:
    BAD_ROWS["number_for_time"] = (lambda r: r.update({TIME_COLUMN: 1_700_000_000}), "datetime_type")
    BAD_ROWS["future_time"] = (lambda r: r.update({TIME_COLUMN: "2100-01-01T00:00:00"}), "not_in_future")


@pytest.mark.parametrize("kind", BAD_ROWS)
def test_bad_rows_are_rejected_with_the_reason(golden: pd.DataFrame, kind: str) -> None:
    request = body(golden, 1)
    spoil, reason = BAD_ROWS[kind]
    spoil(request["transactions"][0])
    with pytest.raises(ValidationError, match=reason):
        validate(request)


def test_batch_size_limits(golden: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="too_short"):
        validate({"transactions": []})
    with pytest.raises(ValidationError, match="too_long"):
        validate(body(golden, 3), max_rows=2)


def test_request_model_follows_the_schema() -> None:
    columns = set(RowSchema.to_schema().columns)
    assert set(Transaction.model_fields) == columns - {LABEL_COLUMN}  # every schema column but the label


def test_rows_and_frames_take_the_same_feature_path(golden: pd.DataFrame) -> None:
    """Serving turns validated rows into arrays; training turns a frame: the matrices must be identical."""
    preprocessor = Preprocessor.fit(golden)
    rows = validate(body(golden, 500), max_rows=500).transactions
    np.testing.assert_array_equal(
        preprocessor.transform_columns(to_columns(rows)), preprocessor.transform(golden.head(500))
    )


def test_serve_settings_are_required(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="package stage"):
        load_serve_settings(tmp_path / SERVE_FILE)
    (tmp_path / SERVE_FILE).write_text(json.dumps({"model_tag": "m:1", "max_rows_per_request": 10}))
    with pytest.raises(ValidationError, match="missing"):
        load_serve_settings(tmp_path / SERVE_FILE)


def test_small_requests_are_scored_on_the_event_loop_large_ones_in_the_pool() -> None:
    """Inline up to inline_max_rows (cheaper than a thread hand-over); beyond, the loop stays free."""

    async def scored_on(rows: int) -> tuple[int, int]:
        pool = anyio.CapacityLimiter(1)
        loop_thread = threading.get_ident()
        return loop_thread, await score_off_loop_if_large(threading.get_ident, rows, inline_max_rows=2, pool=pool)

    for rows in (1, 2):
        loop_thread, scoring_thread = asyncio.run(scored_on(rows))
        assert scoring_thread == loop_thread, rows
    loop_thread, scoring_thread = asyncio.run(scored_on(3))
    assert scoring_thread != loop_thread


async def answer_after(delay_s: float, scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(delay_s)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def timed_call(timeout_s: float, delay_s: float) -> list[dict[str, Any]]:
    """The messages PromptTimeout sends for an app that starts answering after `delay_s`."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = PromptTimeout(functools.partial(answer_after, delay_s), timeout=timeout_s)
    asyncio.run(app({"type": "http", "path": "/predict"}, None, send))
    return sent


def test_the_request_timeout_answers_504_only_when_nothing_was_answered_in_time() -> None:
    assert [m.get("status") for m in timed_call(5.0, 0.0)] == [200, None]
    late = timed_call(0.05, 1.0)
    assert late[0]["status"] == 504 and b"no answer within 0.05 s" in late[1]["body"]


REQUEST_OBJECT: contextvars.ContextVar[object] = contextvars.ContextVar("request_object")


class Marker:
    """Stands for a request's objects, reachable from the context it was handled in."""


def test_the_request_timeout_lets_answered_requests_go() -> None:
    """BentoML's own timeout keeps every request's context alive for the whole timeout after its answer
    (its timer is never cancelled); PromptTimeout's cancelled timers are purged by asyncio once they are
    over half of the scheduled ones, so only a bounded few are held at any time."""

    async def serve_many(middleware: type[Any], requests: int) -> int:
        alive = []
        for _ in range(requests):
            marker = Marker()
            alive.append(weakref.ref(marker))
            REQUEST_OBJECT.set(marker)
            del marker
            await middleware(functools.partial(answer_after, 0.0), timeout=30)(
                {"type": "http"}, None, lambda message: asyncio.sleep(0)
            )
        REQUEST_OBJECT.set(None)
        gc.collect()
        return sum(ref() is not None for ref in alive)

    # That BentoML builds its timeout from PromptTimeout is proved over HTTP: test_a_stalled_model_gets_504.
    assert asyncio.run(serve_many(PromptTimeout, 1000)) <= 200


TRAINING_ONLY = ("lightning", "mlflow", "hydra", "omegaconf", "torchmetrics", "dvc")
IMPORTS_OF_SERVING = (
    "import sys\n"
    "from {{ cookiecutter.package_name }}.serving import service\n"
    "service.load_for_serving(sys.argv[1], 1)\n"
    "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
)


def test_serving_imports_no_training_stack(tmp_path: Path, transactions: pd.DataFrame) -> None:
    """The service starts fast only if loading and scoring the model pulls in no training-only package."""
    tiny_model(transactions).save(tmp_path / "model.pt")
    env = {"PYTHONPATH": str(PROJECT / "src"), "BENTOML_HOME": str(tmp_path / "bentoml")}
    command = [sys.executable, "-c", IMPORTS_OF_SERVING, str(tmp_path / "model.pt")]
    loaded = run(command, tmp_path, env=env).stdout.split()
    assert "torch" in loaded and not set(TRAINING_ONLY) & set(loaded), set(TRAINING_ONLY) & set(loaded)


# --- over HTTP, against `bentoml serve` of the service with a freshly built model ---------------------------


STORE_MODEL = (
    "import json, sys; from pathlib import Path\n"
    "import uuid\n"
    "from {{ cookiecutter.package_name }}.release.package import save_bento_model\n"
    "from {{ cookiecutter.package_name }}.serving.api import MODEL_NAME\n"
    "example = json.loads(Path(sys.argv[2]).read_text())\n"
    "print(save_bento_model(f'{MODEL_NAME}:{uuid.uuid4().hex}', Path(sys.argv[1]), example, 'card', {}, {}))\n"
)


def bento_command(port: int, entry: str = "service:ModelService") -> list[str]:
    """`bentoml serve` of the service in the current folder (a bento folder with its serve.json)."""
    return ["bentoml", "serve", entry, "--host", "127.0.0.1", "--port", str(port)]


def start_server(
    command: list[str], cwd: Path, env: dict[str, str], log: Path, port: int
) -> tuple[subprocess.Popen[bytes], str]:
    """A server in a session of its own, and its base URL, once /readyz answers 200 (stopped if it never does)."""
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 120, alive=lambda: server.poll() is None, describe_exit=lambda: log.read_text()[-3000:])
    except BaseException:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        raise
    return server, url


def serve(command: list[str], cwd: Path, env: dict[str, str], log: Path, port: int) -> Generator[str, None, None]:
    """Run a server until the generator is closed; yields its base URL once /readyz answers 200."""
    server, url = start_server(command, cwd, env, log, port)
    try:
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def serve_bento(
    scratch: Path, model: Any, golden: pd.DataFrame, entry: str, **settings: Any
) -> Iterator[dict[str, Any]]:
    """`bentoml serve` of `entry` from a bento folder (bentos/service.py, and probe_service.py: the same service
    with tests/support/probes.py), `model` in a scratch BENTOML_HOME, serve.json from conf/serve with `settings`
    over it. Yields once /readyz answers 200."""
    model.save(scratch / "model.pt")
    (scratch / "example.json").write_text(json.dumps(body(golden, 2)))
    path = os.pathsep.join([str(PROJECT / "src"), str(PROJECT / "tests")])
    env = {**os.environ, "PYTHONPATH": path, "BENTOML_HOME": str(scratch / "bentoml")}
    tag = run(
        [sys.executable, "-c", STORE_MODEL, str(scratch / "model.pt"), str(scratch / "example.json")], scratch, env=env
    )
    bento_dir = scratch / "bento"
    bento_dir.mkdir()
    shutil.copy(PROJECT / "bentos" / "service.py", bento_dir / "service.py")
    (bento_dir / "probe_service.py").write_text(PROBED_ENTRY)
    defaults = yaml.safe_load((PROJECT / "conf" / "serve" / "default.yaml").read_text())
    response = yaml.safe_load((PROJECT / "params.yaml").read_text())["dataset"]["response"]
    serve_json = {**defaults, "response": response, **settings, "model_tag": tag.stdout.strip().splitlines()[-1]}
    (bento_dir / SERVE_FILE).write_text(json.dumps(serve_json))
    (port,) = free_ports(1)
    log = scratch / "server.log"
    # Started from the bento folder, as a shell there would: the log's relative dir is under $PWD.
    env = {**env, "PWD": str(bento_dir)}
    server = serve(bento_command(port, entry), bento_dir, env, log, port)
    yield {"url": next(server), "model": model, "log": log, "bento": bento_dir, "env": env, "settings": serve_json}
    server.close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, transactions: pd.DataFrame, golden: pd.DataFrame
) -> Iterator[dict[str, Any]]:
    """`bentoml serve` of bentos/service.py with a model in a scratch BENTOML_HOME and conf/serve's settings."""
    model = tiny_model(transactions)
    yield from serve_bento(tmp_path_factory.mktemp("served"), model, golden, "service:ModelService")


@pytest.fixture(scope="module")
def probed(
    tmp_path_factory: pytest.TempPathFactory, transactions: pd.DataFrame, golden: pd.DataFrame
) -> Iterator[dict[str, Any]]:
    """The same service with probes into its worker (tests/support/probes.py) and a 1 s request timeout."""
    model = tiny_model(transactions)
    yield from serve_bento(tmp_path_factory.mktemp("probed"), model, golden, "probe_service:ModelService", timeout_s=1)


def probe(url: str, arm: bool | None = None) -> dict[str, Any]:
    """What the worker saw (GET); with `arm`, first arm or disarm its DataFrame trap and clear its batch record."""
    answer = (
        httpx.get(url + PROBE_PATH, timeout=10)
        if arm is None
        else httpx.post(url + PROBE_PATH, json={"arm": arm}, timeout=10)
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def golden_chunks(golden: pd.DataFrame) -> list[pd.DataFrame]:
    return [golden.iloc[start : start + ROW_CAP] for start in range(0, len(golden), ROW_CAP)]


def test_served_scores_equal_the_evaluation_predictions(served: dict[str, Any], golden: pd.DataFrame) -> None:
    """No skew: over HTTP, the golden rows score exactly as the evaluate stage scores them."""
    _, predictions, _ = evaluate(served["model"], golden, {})  # scores only: no behavioural checks
    answers = []
    for chunk in golden_chunks(golden):
        response = httpx.post(f"{served['url']}/predict", json=request_body(chunk), timeout=30)
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    assert [a[ID_COLUMN] for a in answers] == predictions[ID_COLUMN].tolist()
    np.testing.assert_allclose([a[SCORE] for a in answers], predictions["score"], rtol=0, atol=1e-6)


def test_the_served_model_logs_what_it_scored(served: dict[str, Any], golden: pd.DataFrame) -> None:
    """The running service writes the scored rows to its prediction log (conf/serve's dir, under the folder it
    was started from), all but the deploy engine's shadow copies."""
    copy = body(golden, 2)
    marker = float(golden[NUMBER].min() + golden[NUMBER].max()) / 2 + 1e-7  # valid, and no other request sends it
    for row in copy["transactions"]:
        row[NUMBER] = marker
    shadow = httpx.post(f"{served['url']}/predict", json=copy, headers={SHADOW_HEADER: "1"}, timeout=30)
    assert shadow.status_code == 200, shadow.text
    response = httpx.post(f"{served['url']}/predict", json=body(golden, 3), timeout=30)
    assert response.status_code == 200, response.text
    scores = [p[SCORE] for p in response.json()["predictions"]]
    files = served["bento"] / "logs" / "predictions" / "predictions" / "data"
    deadline, lines = time.monotonic() + 15, list[dict[str, Any]]()
    while time.monotonic() < deadline and scores != [line[SCORE_COLUMN] for line in lines[-3:]]:
        time.sleep(0.1)
        lines = [json.loads(text) for path in files.glob("data.*.log*") for text in path.read_text().splitlines()]
    assert [line[SCORE_COLUMN] for line in lines[-3:]] == scores, lines[-3:]
    assert {line["model"] for line in lines} == {response.json()["model"]}
    time.sleep(1.0)  # the writer threads had time to write the copy too, had it been queued
    lines = [json.loads(text) for path in files.glob("data.*.log*") for text in path.read_text().splitlines()]
    assert not [line for line in lines if line[NUMBER] == marker], "a shadow copy reached the prediction log"


def spoiled(golden: pd.DataFrame, field: str, value: Any, row: int = 0) -> bytes:
    request = body(golden, 2)
    request["transactions"][row][field] = value
    return json.dumps(request).encode()


def literal(golden: pd.DataFrame, literal_text: str) -> bytes:
    """A body with a bare JSON literal (NaN, Infinity) for the amount of row 1, which json.dumps cannot write."""
    request = body(golden, 2)
    request["transactions"][1]["amount"] = 123456.789
    return json.dumps(request).encode().replace(b"123456.789", literal_text.encode())


CLIENT_ERRORS: dict[str, tuple[Callable[[pd.DataFrame], bytes], str, int, str]] = {
    # name: (body, content type, status, what the answer must name)
    "string_number": (lambda g: spoiled(g, "amount", "12.5"), "application/json", 400, "transactions.0.amount"),
    "yes_for_bool": (
        lambda g: spoiled(g, "card_present", "yes"),
        "application/json",
        400,
        "transactions.0.card_present",
    ),
    "one_for_bool": (
        lambda g: spoiled(g, "card_present", 1, 1),
        "application/json",
        400,
        "transactions.1.card_present",
    ),
    "nan_literal": (lambda g: literal(g, "NaN"), "application/json", 400, "finite"),
    "infinity_literal": (lambda g: literal(g, "Infinity"), "application/json", 400, "finite"),
    "extra_field": (lambda g: spoiled(g, "is_fraud", 1), "application/json", 400, "transactions.0.is_fraud"),
    "too_many_rows": (
        lambda g: json.dumps(body(g, 1) | {"transactions": body(g, 1)["transactions"] * (ROW_CAP + 1)}).encode(),
        "application/json",
        400,
        "too_long",
    ),
    "five_megabytes": (
        lambda g: b'{"transactions": ["' + b"x" * 5_000_000 + b'"]}',
        "application/json",
        413,
        "larger than",
    ),
    "not_json_type": (lambda g: json.dumps(body(g, 1)).encode(), "text/plain", 415, "application/json"),
    "form_type": (lambda g: b"transactions=1", "application/x-www-form-urlencoded", 415, "application/json"),
    "malformed_json": (lambda g: b'{"transactions": [', "application/json", 400, "json_invalid"),
    "future_time": (
        lambda g: spoiled(g, "event_time", "2100-01-01T00:00:00", 1),
        "application/json",
        400,
        "transactions.1.event_time",
    ),
}


def located(answer: httpx.Response) -> str:
    """The answer with pydantic's error locations also written as dotted paths."""
    detail = (
        answer.json().get("detail", []) if answer.headers.get("content-type", "").startswith("application/json") else []
    )
    paths = [".".join(map(str, e.get("loc", []))) for e in detail if isinstance(e, dict)]
    return answer.text + " " + " ".join(paths)


@pytest.mark.parametrize("route", ["/predict", "/predict_batched"])
@pytest.mark.parametrize("case", CLIENT_ERRORS)
@pytest.mark.example  # spoils the example's own columns over HTTP
def test_client_errors_get_a_clear_4xx(served: dict[str, Any], golden: pd.DataFrame, case: str, route: str) -> None:
    make, content_type, status, named = CLIENT_ERRORS[case]
    answer = httpx.post(served["url"] + route, content=make(golden), headers={"content-type": content_type}, timeout=30)
    assert answer.status_code == status, answer.text[:500]
    assert named in located(answer), answer.text[:500]


@pytest.mark.parametrize(
    ("field", "value", "logged"),
    [
        ("amount", "do-not-log-me-4242", "transactions.0.amount (float_type)"),
        # A request-wide custom check has no field path of its own: the line says so and names the row.
        ("event_time", "2100-01-01T00:00:00", "body (value_error: Value error, transactions.0.event_time: fails"),
    ],
)
@pytest.mark.example  # spoils the example's own columns over HTTP
def test_client_errors_are_logged_without_request_values(
    served: dict[str, Any], golden: pd.DataFrame, field: str, value: str, logged: str
) -> None:
    answer = httpx.post(
        f"{served['url']}/predict",
        content=spoiled(golden, field, value),
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    log = served["log"].read_text()
    assert f"client error 400 on /predict: {logged}" in log
    assert value not in log and "Traceback" not in log


def test_batched_requests_are_scored_together_and_fail_alone(probed: dict[str, Any], golden: pd.DataFrame) -> None:
    """8 concurrent clients, one with a bad row: rows of several requests go through one model call, the 7 good
    requests get their own answers, the bad one only its own error, and no batch holds its rows."""
    url, model = probed["url"], probed["model"]
    requests = [body(golden.iloc[3 * i : 3 * i + 3], 3) for i in range(8)]
    requests[5]["transactions"][1][NUMBER] = "12.5"

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.post(f"{url}/predict_batched", json=r) for r in requests))

    probe(url, arm=False)  # clears the worker's record of batches
    answers = asyncio.run(send_all())
    for i, (request, answer) in enumerate(zip(requests, answers, strict=True)):
        ids = [row[ID_COLUMN] for row in request["transactions"]]
        if i == 5:
            assert answer.status_code == 400 and f"transactions.1.{NUMBER}" in located(answer)
            others = {row[ID_COLUMN] for j, r in enumerate(requests) if j != 5 for row in r["transactions"]}
            assert not any(other in answer.text for other in others), answer.text
            continue
        assert answer.status_code == 200, answer.text
        expected = model.predict_proba(golden.iloc[3 * i : 3 * i + 3])
        assert [p[ID_COLUMN] for p in answer.json()] == ids
        np.testing.assert_allclose([p[SCORE] for p in answer.json()], expected, rtol=0, atol=1e-6)
    batches = probe(url)["batches"]
    assert sum(batches) == 7 * 3, f"the model scored {batches} rows per call: the 21 valid rows once each"
    assert max(batches) > 3, f"no call scored rows of more than one request: {batches}"


def test_a_stalled_model_gets_504_from_the_server(probed: dict[str, Any], golden: pd.DataFrame) -> None:
    """A model call that outlasts serve.timeout_s: the client gets the service's 504 at the timeout, not the
    answer when scoring ends; BentoML's own timeout would say "Not able to process the request in ..."."""
    url, timeout_s = probed["url"], probed["settings"]["timeout_s"]
    assert 3 * timeout_s < STALL_S
    # More rows than inline_max_rows: scored in the worker's thread pool. A small request is scored on the event
    # loop, so a stall there holds the loop itself and no timeout can answer (seen: 200 once the stall ended).
    request = body(golden, probed["settings"]["inline_max_rows"] + 1)
    request["transactions"][0][ID_COLUMN] = STALL_ID
    started = time.monotonic()
    answer = httpx.post(f"{url}/predict", json=request, timeout=3 * STALL_S)
    waited = time.monotonic() - started
    assert answer.status_code == 504, answer.text[:500]
    assert answer.json() == {"error": f"no answer within {timeout_s} s"}
    assert waited < STALL_S, f"answered after {waited:.1f} s: when scoring ended, not at the timeout"
    assert httpx.post(f"{url}/predict", json=body(golden, 3), timeout=30).status_code == 200


def test_the_worker_froze_its_start_up_heap(probed: dict[str, Any]) -> None:
    """gc.freeze after the warm-up, seen from inside the serving worker: the objects alive at start-up
    (modules, torch, the model) sit in the permanent generation, out of every collection's walk."""
    frozen = probe(probed["url"])["freeze_count"]
    assert frozen > 10_000, f"{frozen} objects frozen in the worker"


def test_no_dataframe_is_built_while_serving(probed: dict[str, Any], golden: pd.DataFrame) -> None:
    """With pandas and polars DataFrame construction made to raise in the worker, both endpoints still answer,
    inline (small) and in the pool (large), and nothing on the way swallowed a refused construction."""
    url, model = probed["url"], probed["model"]
    large = probed["settings"]["inline_max_rows"] + 1
    armed = probe(url, arm=True)
    try:
        assert armed["trap_catches"], "the trap did not refuse a DataFrame in the worker"
        for route, rows in (("/predict", 3), ("/predict", large), ("/predict_batched", 3), ("/predict_batched", large)):
            answer = httpx.post(url + route, json=body(golden, rows), timeout=30)
            assert answer.status_code == 200, f"{route} with {rows} rows: {answer.text[:500]}"
            predictions = answer.json()["predictions"] if route == "/predict" else answer.json()
            expected = model.predict_proba(golden.head(rows))
            np.testing.assert_allclose([p[SCORE] for p in predictions], expected, rtol=0, atol=1e-6)
        assert probe(url)["frames_refused"] == 0
    finally:
        probe(url, arm=False)


def test_a_worker_ends_with_its_killed_supervisor(served: dict[str, Any], tmp_path: Path) -> None:
    """kill -9 of `bentoml serve` leaves no orphan worker answering on the port (nor holding it)."""
    (port,) = free_ports(1)
    supervisor, url = start_server(bento_command(port), served["bento"], served["env"], tmp_path / "server.log", port)
    workers: list[psutil.Process] = []
    try:
        workers = psutil.Process(supervisor.pid).children(recursive=True)
        assert workers, "bentoml serve started no worker process"
        supervisor.kill()  # SIGKILL to the supervisor alone, as the OOM killer or a careless kill -9 would
        supervisor.wait(timeout=10)
        _, orphans = psutil.wait_procs(workers, timeout=30)
        assert not orphans, f"workers outlived their supervisor: {[w.pid for w in orphans]}"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/readyz", timeout=5)
    finally:
        for process in [*workers, psutil.Process(supervisor.pid)] if supervisor.poll() is None else workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def test_docs_probes_and_metrics(served: dict[str, Any]) -> None:
    docs = httpx.get(f"{served['url']}/docs", follow_redirects=True, timeout=10)
    assert docs.status_code == 200 and "<html" in docs.text.lower()
    spec = httpx.get(f"{served['url']}/docs.json", timeout=10).json()
    assert {"/predict", "/predict_batched"} <= set(spec["paths"])
    for probe in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(served["url"] + probe, timeout=10).status_code == 200, probe


# --- the packaged bento of a real pipeline run (slow) -----------------------------------------------------


@pytest.mark.slow
def test_packaged_bento_serves_the_pipelines_predictions(packaged_workspace: Path) -> None:
    """`bentoml serve <bento tag>`: smoke answers, and reports/predictions.parquet to 1e-6 for the golden rows."""
    package = json.loads((packaged_workspace / "reports" / "package.json").read_text())
    env = {
        **os.environ,
        "PYTHONPATH": str(packaged_workspace / "src"),
        "BENTOML_HOME": str(packaged_workspace / "tmp" / "bentoml"),
    }
    (port,) = free_ports(1)
    command = ["bentoml", "serve", package["bento_tag"], "--host", "127.0.0.1", "--port", str(port)]
    server = serve(command, packaged_workspace, env, packaged_workspace / "tmp" / "serve.log", port)
    url = next(server)
    try:
        smoke = json.loads((packaged_workspace / "bentos" / "smoke_requests.json").read_text())["requests"][0]
        good = httpx.post(f"{url}/predict", json=smoke["body"], timeout=10)
        assert good.status_code == 200 and good.json() == smoke["expected"]
        golden = pd.read_parquet(packaged_workspace / "data" / "golden" / "transactions.parquet")
        predictions = pd.read_parquet(packaged_workspace / "reports" / "predictions.parquet")
        scores = []
        for chunk in golden_chunks(golden):
            answer = httpx.post(f"{url}/predict", json=request_body(chunk), timeout=60)
            assert answer.status_code == 200, answer.text[:500]
            scores += [p[SCORE] for p in answer.json()["predictions"]]
        np.testing.assert_allclose(scores, predictions["score"], rtol=0, atol=1e-6)
    finally:
        server.close()
