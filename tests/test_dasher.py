"""The real DASHER client against the dev server running as a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests
from test_ledger_db import postgres_url  # noqa: F401  # the session's PostgreSQL database

from sendit_ops.core.errors import ProviderError
from sendit_ops.pseudonyms.dasher_client import DasherClient, FileTokenStore, RetryPolicy, Tokens
from sendit_ops.pseudonyms.providers import StudyIdentity, build_request, parse_response

pytestmark = pytest.mark.emulator

FAST = RetryPolicy(
    max_attempts=4, max_total_seconds=20, base_delay=0.05, max_delay=0.5, timeout=(2.0, 1.0)
)
IDENT = StudyIdentity(
    "MRN100234",
    "ACC10001",
    entity_timestamp="1971-03-04T00:00:00Z",
    item_timestamp="2024-01-15T08:30:00Z",
)


@pytest.fixture(scope="module")
def store(dasher, tmp_path_factory):
    """One token store for the module: rotations of one test are kept for the next."""
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    return FileTokenStore(path, Tokens.from_stanford_json(dasher.creds()))


@pytest.fixture
def client(dasher, store):
    dasher.clear()
    return DasherClient(dasher.url, store, policy=FAST)


def test_happy_path_gives_stable_pseudonyms(client):
    first = parse_response(client.lookup("irb1", build_request([IDENT])), IDENT)
    again = parse_response(client.lookup("irb1", build_request([IDENT])), IDENT)
    other_study = parse_response(client.lookup("irb2", build_request([IDENT])), IDENT)
    assert first == again
    assert first.entity_suid != other_study.entity_suid
    assert first.jitter < 0 and first.jittered_timestamp.startswith("2023-12")


def test_more_than_1000_items_are_split_and_reassembled(client, dasher):
    calls = dasher.stats()["uid_calls"]
    items = [StudyIdentity("MRN1", f"ACC{n:05d}") for n in range(2500)]
    answer = client.lookup("irb1", build_request(items))
    assert len(answer["results"]) == 1 and len(answer["results"][0]["items"]) == 2500
    assert dasher.stats()["uid_calls"] - calls == 3
    assert dasher.stats()["max_items"] <= 1000
    suids = {parse_response(answer, i).item_suid for i in items[:50]}
    assert len(suids) == 50


def test_expired_token_is_refreshed_and_kept_for_the_next_process(client, dasher):
    before = dasher.stats()["refreshes"]
    old = client.store.load()
    dasher.expire()
    client.lookup("irb1", build_request([IDENT]))
    assert dasher.stats()["refreshes"] == before + 1
    rotated = client.store.load()
    assert rotated.access_token != old.access_token and rotated.refresh_token != old.refresh_token
    # the old refresh token is dead now
    dead = requests.post(old.token_uri, json={"refreshToken": old.refresh_token}, timeout=5)
    assert dead.status_code == 401
    # a new process reads the stored tokens and calls without refreshing again
    code = (
        "from sendit_ops.pseudonyms.dasher_client import DasherClient, FileTokenStore\n"
        "from sendit_ops.pseudonyms.providers import StudyIdentity, build_request\n"
        f"c = DasherClient({dasher.url!r}, FileTokenStore({str(client.store.path)!r}))\n"
        "print(len(c.lookup('irb1', build_request([StudyIdentity('M1', 'A1')]))['results']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stderr
    assert dasher.stats()["refreshes"] == before + 1


@pytest.mark.parametrize(
    "kind,count,extra",
    [
        ("500", 2, {}),
        ("429", 1, {"retry_after": 1}),
        ("slow", 1, {"delay": 2}),
    ],
)
def test_transient_faults_are_retried_to_success(client, dasher, kind, count, extra):
    dasher.fault(kind, count, **extra)
    started = time.monotonic()
    answer = client.lookup("irb1", build_request([IDENT]))
    assert parse_response(answer, IDENT).entity_suid
    if kind == "429":
        assert time.monotonic() - started >= 1.0  # Retry-After honoured


@pytest.mark.parametrize(
    "kind,count,extra,message",
    [
        ("500", 50, {}, "gave up after 4 attempts"),
        ("slow", 50, {"delay": 2}, "DASHER unreachable (ReadTimeout)"),
        ("429", 50, {"retry_after": 30}, "retry budget"),
        ("malformed", 1, {}, "no 'results'"),
        ("not_json", 1, {}, "not JSON"),
        ("missing_items", 1, {}, "lacks a study that was sent"),
        ("401", 50, {}, "refused the refreshed access token"),
    ],
)
def test_faults_end_as_a_clear_provider_error_in_bounded_time(
    client, dasher, kind, count, extra, message
):
    dasher.fault(kind, count, **extra)
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        client.lookup("irb1", build_request([IDENT]))
    assert message in str(err.value)
    assert time.monotonic() - started < FAST.max_total_seconds + 5
    text = str(err.value)
    assert "MRN100234" not in text and "ACC10001" not in text
    assert client.store.load().access_token not in text
    dasher.clear()


def test_client_errors_are_not_retried(client, dasher):
    calls = dasher.stats()["uid_calls"]
    with pytest.raises(ProviderError, match="refused the request \\(HTTP 400\\)"):
        client.lookup("irb1", {"identifiers": [{"id": "bad id!", "id_source": "x", "items": []}]})
    assert dasher.stats()["uid_calls"] == calls + 1


def test_stanford_credentials_import(dasher, tmp_path):
    from sendit_ops.pseudonyms.dasher_client import stanford_to_connection

    conn = stanford_to_connection(dasher.creds(), "")
    assert conn["conn_type"] == "dasher" and conn["host"] == dasher.url
    assert json.dumps(conn)  # usable as AIRFLOW_CONN_DASHER_DEFAULT
    # Airflow takes the id from the variable's name and refuses a JSON that carries one
    assert "conn_id" not in conn
    other = "https://other.example.org/api"  # --base-url wins over the file's base_url
    assert stanford_to_connection(dasher.creds(), other)["host"] == other


@pytest.mark.parametrize("field", ["accessToken", "refreshToken", "token_uri"])
def test_stanford_credentials_without_a_field_name_it(field):
    from sendit_ops.core.errors import ConfigError
    from sendit_ops.pseudonyms.dasher_client import stanford_to_connection

    creds = {"accessToken": "a-token", "refreshToken": "r-token", "token_uri": "https://t/token"}
    for broken in ({k: v for k, v in creds.items() if k != field}, {**creds, field: ""}):
        with pytest.raises(ConfigError, match=f"lack '{field}'"):
            stanford_to_connection(broken, "https://dasher.example.org/api")
    with pytest.raises(ConfigError, match="not a JSON object"):
        stanford_to_connection(["not", "an", "object"], "https://dasher.example.org/api")


REFRESHER = """
import json, os, sys, time
from dataclasses import asdict
from pathlib import Path
from sendit_ops.core.ledger.named_lock import named_lock
from sendit_ops.pseudonyms.dasher_client import DasherClient, Tokens
from sendit_ops.pseudonyms.providers import StudyIdentity, build_request, parse_response

url, tokens_file, ledger_url, go = sys.argv[1:5]


class SharedStore:
    # like the Airflow Variable of the DASHER hook: shared by every worker, no lock of its own
    def load(self):
        return Tokens(**json.loads(Path(tokens_file).read_text()))

    def save(self, tokens):
        tmp = Path(tokens_file + ".tmp")
        tmp.write_text(json.dumps(asdict(tokens)))
        tmp.replace(tokens_file)


lock = (lambda: named_lock(ledger_url, "dasher-token-test")) if ledger_url else None
client = DasherClient(url, SharedStore(), refresh_lock=lock)
Path(f"{go}.ready.{os.getpid()}").touch()
while not Path(go).exists():
    time.sleep(0.01)
identity = StudyIdentity("MRN100234", "ACC10001")
print(parse_response(client.lookup("irb1", build_request([identity])), identity).entity_suid)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "no lock"])
def test_four_processes_with_an_expired_token_refresh_it_once(
    dasher, store, tmp_path, request, backend
):
    """Refresh tokens are single-use: workers whose access token expired together must not
    each refresh it (all but one would be refused, and told to replace valid credentials).
    Under the ledger's named lock exactly one refreshes; the others use the stored tokens."""
    from dataclasses import asdict

    if backend == "sqlite":
        ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    elif backend == "postgresql":
        ledger_url = request.getfixturevalue("postgres_url")
    else:  # the check can fail: without the lock, the refreshes collide
        ledger_url = ""
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps(asdict(store.load())))  # the module's current tokens
    dasher.clear()
    dasher.expire()
    dasher.token_delay(1.0)  # every process reaches its refresh before the first one ends
    before = dasher.stats()
    go = tmp_path / "go"
    args = [dasher.url, str(tokens_file), ledger_url, str(go)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REFRESHER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)  # every process started, imports done, waiting for the signal
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    dasher.token_delay(0.0)
    after = dasher.stats()
    if backend == "no lock":
        assert after["refresh_calls"] - before["refresh_calls"] == 4
        assert sorted(p.returncode for p in procs) == [0, 1, 1, 1]
        failed = [err for p, (_, err) in zip(procs, outs, strict=True) if p.returncode]
        assert all("DASHER token refresh refused (HTTP 401)" in err for err in failed)
        winner = next(out.strip() for out, _ in outs if out.strip())
        store.save(Tokens(**json.loads(tokens_file.read_text())))
        assert winner
        return
    assert [p.returncode for p in procs] == [0] * 4, [err[-800:] for _, err in outs]
    suids = {out.strip() for out, _ in outs}
    assert len(suids) == 1 and suids != {""}  # every process got the same pseudonym
    assert after["refresh_calls"] - before["refresh_calls"] == 1
    assert after["refreshes"] - before["refreshes"] == 1
    store.save(Tokens(**json.loads(tokens_file.read_text())))  # the next test's tokens
