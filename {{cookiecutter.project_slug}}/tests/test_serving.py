"""Serving: the request model comes from the schema; the service answers in-process and over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from conftest import run
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.deploy.checks import wait_ready
from {{ cookiecutter.package_name }}.deploy.runtime import free_ports
from {{ cookiecutter.package_name }}.serving.api import Transaction, request_model


def body(golden: pd.DataFrame, rows: int = 3) -> dict[str, Any]:
    from {{ cookiecutter.package_name }}.release.package import request_body

    return request_body(golden.head(rows))


BAD_ROWS = {
    "missing_field": (lambda r: r.pop("amount"), "missing"),
    "wrong_type": (lambda r: r.update(txn_count_1h="many"), "int_type"),
    "float_for_int": (lambda r: r.update(account_age_days=3.5), "int_type"),
    "out_of_range": (lambda r: r.update(amount=-4.0), "greater_than"),
    "unknown_category": (lambda r: r.update(merchant_category="casino"), "literal_error"),
    "extra_field": (lambda r: r.update(is_fraud=1), "extra_forbidden"),
    "future_time": (lambda r: r.update(event_time="2100-01-01T00:00:00"), "not_in_future"),
}


@pytest.mark.parametrize("kind", BAD_ROWS)
def test_bad_rows_are_rejected_with_the_reason(golden: pd.DataFrame, kind: str) -> None:
    request = body(golden, 1)
    spoil, reason = BAD_ROWS[kind]
    spoil(request["transactions"][0])
    with pytest.raises(ValidationError, match=reason):
        request_model(10)(**request)


def test_batch_size_limits(golden: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="too_short"):
        request_model(10)(transactions=[])
    with pytest.raises(ValidationError, match="too_long"):
        request_model(2)(**body(golden, 3))


def test_request_model_follows_the_schema() -> None:
    assert set(Transaction.model_fields) == {  # every schema column but the label
        "transaction_id",
        "event_time",
        "amount",
        "merchant_category",
        "card_country",
        "merchant_country",
        "card_present",
        "account_age_days",
        "txn_count_1h",
        "amount_avg_30d",
        "distance_from_home_km",
    }


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose pipeline ran through `package`: a real bento in its own BENTOML_HOME."""
    from conftest import make_workspace

    workspace = make_workspace(tmp_path_factory.mktemp("serving"), rows=20_000)
    run([sys.executable, "tools/params.py", "debug=fast"], workspace)
    run(["dvc", "repro"], workspace, timeout=900)
    return workspace


@pytest.mark.slow
def test_service_in_process(packaged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(packaged / "tmp" / "bentoml"))
    script = (
        "import asyncio, json; from {{ cookiecutter.package_name }}.serving.service import FraudDetector, PredictRequest\n"
        "service = FraudDetector.inner(); assert service.__is_ready__()\n"
        "smoke = json.load(open('bentos/smoke_requests.json'))['requests'][0]\n"
        "request = PredictRequest(**smoke['body'])\n"
        "answer = asyncio.run(service.predict(transactions=request.transactions))\n"
        "print(json.dumps(answer.model_dump() == smoke['expected']))\n"
    )
    result = run([sys.executable, "-c", script], packaged)
    assert result.stdout.strip().endswith("true")


@pytest.mark.slow
def test_http_good_and_bad_requests_against_bentoml_serve(packaged: Path) -> None:
    package = json.loads((packaged / "reports" / "package.json").read_text())
    (port,) = free_ports(1)
    env = {**os.environ, "PYTHONPATH": str(packaged / "src"), "BENTOML_HOME": str(packaged / "tmp" / "bentoml")}
    server = subprocess.Popen(
        ["bentoml", "serve", package["bento_tag"], "--host", "127.0.0.1", "--port", str(port)],
        cwd=packaged,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # The rollout engine's own readiness wait: fails fast with the reason if the server dies.
        wait_ready(
            url,
            120,
            alive=lambda: server.poll() is None,
            describe_exit=lambda: server.stdout.read() if server.stdout and server.poll() is not None else "",
        )
        smoke = json.loads((packaged / "bentos" / "smoke_requests.json").read_text())["requests"][0]
        good = httpx.post(f"{url}/predict", json=smoke["body"], timeout=10)
        assert good.status_code == 200 and good.json() == smoke["expected"]
        row = dict(smoke["body"]["transactions"][0])
        bad_requests = [
            {"transactions": [{k: v for k, v in row.items() if k != "amount"}]},
            {"transactions": [{**row, "amount": "lots"}]},
            {"transactions": [{**row, "amount": -1}]},
            {"transactions": []},
            {"transactions": [row] * 1001},
        ]
        for bad in bad_requests:
            answer = httpx.post(f"{url}/predict", json=bad, timeout=10)
            assert 400 <= answer.status_code < 500, (bad, answer.status_code, answer.text)
        malformed = httpx.post(
            f"{url}/predict", content=b"{not json", timeout=10, headers={"content-type": "application/json"}
        )
        assert 400 <= malformed.status_code < 500
        batched = httpx.post(f"{url}/predict_batched", json={"transactions": [row]}, timeout=10)
        assert batched.status_code == 200 and batched.json()[0]["transaction_id"] == row["transaction_id"]
        assert httpx.post(f"{url}/predict", json=smoke["body"], timeout=10).status_code == 200, "server went down"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
