"""The OpenAPI schema against what the API really answers: schemathesis (requirements-dev.txt) runs
every operation of /api/schema/ against a live daphne, with all its checks (server errors, status
codes, content types, headers, response schemas and SSE events, valid data accepted and invalid
refused, authentication enforced, one user's objects hidden from another) and all its phases
(examples, coverage, fuzzing, stateful sequences of calls), as two users that log in through
POST /api/auth/token. Its configuration: tests/schemathesis.toml.

The server is the browser tests' (tests/conftest.py): the run's test database, Redis and the real
Celery worker when the run has them, else the embedded default with a SQLite file of its own; the
fake LLM; Piper for speech. Rate limits are set far out of reach so that they do not hide the logic.
The whole report lands in var/test-artifacts/schemathesis/. `MM_SCHEMATHESIS_EXAMPLES` (cases per
operation and phase) and `MM_SCHEMATHESIS_SEED` change the run.
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, live_daphne, live_server_env, services_mode

pytest.importorskip("schemathesis", reason="needs schemathesis (requirements-dev.txt)")

CONFIG = ROOT / "tests" / "schemathesis.toml"
ARTIFACTS = Path(os.environ.get("MM_SCHEMATHESIS_ARTIFACTS", ROOT / "var" / "test-artifacts" / "schemathesis"))
PASSWORD = "correct-horse-9"
MAX_EXAMPLES = os.environ.get("MM_SCHEMATHESIS_EXAMPLES", "30")
SEED = os.environ.get("MM_SCHEMATHESIS_SEED", "20261202")
RUN_TIMEOUT = 600  # seconds; a run takes under a minute on a quiet two-core machine

# Out of reach: every generated request must reach the logic behind the limits.
NO_LIMITS = {"RATELIMIT_LOGIN": "100000/m", "RATELIMIT_CHAT": "100000/m", "RATELIMIT_TTS": "100000/m"}

pytestmark = []
if services_mode():
    # The server writes to the test database: flush it after each test.
    pytestmark.append(pytest.mark.django_db(transaction=True))


@pytest.fixture(scope="module")
def api_server(request, fake_llm_server, tmp_path_factory):
    """http://127.0.0.1:<port> of a live daphne."""
    directory = tmp_path_factory.mktemp("schemathesis-server")
    env = live_server_env(request, fake_llm_server, directory)
    # Texts to speak of at most 60 characters keep each synthesis short on a loaded machine.
    env.update(NO_LIMITS, TTS_MAX_CHARS="60")
    with live_daphne(env, directory) as port:
        yield f"http://127.0.0.1:{port}"


def register(base_url: str, username: str) -> str:
    """Register through the site's page (as a person would); returns an API token."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.get("/accounts/register/").raise_for_status()
        form = {"username": username, "password1": PASSWORD, "password2": PASSWORD}
        response = client.post("/accounts/register/", data={**form, "csrfmiddlewaretoken": client.cookies["csrftoken"]})
        assert response.status_code == 302, response.text[-2000:]
    response = httpx.post(f"{base_url}/api/auth/token", json={"username": username, "password": PASSWORD})
    response.raise_for_status()
    return response.json()["token"]


def wfc_login(name: str, username: str) -> dict:
    """A Web Fuzzing Commons auth entry: schemathesis logs in through POST /api/auth/token itself."""
    return {
        "name": name,  # the peer's name in tests/schemathesis.toml
        "loginEndpointAuth": {
            "endpoint": "/api/auth/token",
            "verb": "POST",
            "contentType": "application/json",
            "payloadUserPwd": {
                "username": username,
                "usernameField": "username",
                "password": PASSWORD,
                "passwordField": "password",
            },
            "token": {
                "extractFrom": "body",
                "extractSelector": "/token",
                "sendIn": "header",
                "sendName": "Authorization",
                "sendTemplate": "Token {token}",
            },
        },
    }


def test_schemathesis_finds_no_mismatch(api_server, tmp_path, wav_bytes):
    suffix = uuid.uuid4().hex[:6]
    users = {"alice": f"alice{suffix}", "bob": f"bob{suffix}"}
    tokens = [register(api_server, username) for username in users.values()]
    for token in tokens:  # real objects for the speaker routes (a generated upload is never audio)
        response = httpx.post(
            f"{api_server}/api/speakers",
            headers={"Authorization": f"Token {token}"},
            data={"name": "Voice", "prompt_text": "今天天气真好。"},
            files={"audio": ("voice.wav", wav_bytes(seconds=2.0), "audio/wav")},
            timeout=60,
        )
        assert response.status_code == 201, response.text
    schema = httpx.get(f"{api_server}/api/schema/?format=json", headers={"Authorization": f"Token {tokens[0]}"})
    schema.raise_for_status()
    schema_path = tmp_path / "openapi.json"
    schema_path.write_bytes(schema.content)
    wfc_path = tmp_path / "wfc-auth.json"
    wfc_path.write_text(json.dumps({"auth": [wfc_login(name, username) for name, username in users.items()]}))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color", "run"),
        *(str(schema_path), "--url", api_server, "--checks", "all"),
        *("--phases", "examples,coverage,fuzzing,stateful", "--max-examples", MAX_EXAMPLES, "--seed", SEED),
        *("--workers", "1", "--report", "junit", "--report-dir", str(ARTIFACTS)),
    ]
    env = {**os.environ, "MM_SCHEMATHESIS_WFC": str(wfc_path)}
    started = time.monotonic()
    # In tmp_path: whatever schemathesis or Hypothesis write beside them stays out of the tree.
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    (ARTIFACTS / "output.txt").write_text(output)
    summary = re.search(r"Test cases:\n\s*(.+)", output)
    print(f"schemathesis: {summary.group(1) if summary else '?'} in {elapsed:.0f} s")
    assert result.returncode == 0, f"schemathesis failed ({ARTIFACTS / 'output.txt'}):\n{output[-12000:]}"
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # each ran, and passed
        assert re.search(rf"✅ +{phase}\n", output), f"{phase} did not run:\n{output[-4000:]}"


def test_malformed_multipart_gets_the_json_error(api_server):
    """A multipart body with no parts reaches Django (Twisted used to answer it with a bare 400)."""
    boundary = "b" * 32
    response = httpx.post(
        f"{api_server}/api/conversations",
        content=f"--{boundary}--\r\n".encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_authenticated"
