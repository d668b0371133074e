"""The review desk's decisions (dashboard/review.py) against Airflow's real auth manager
and metadata database: a decision needs the session's CSRF token and a logged-in user who
may trigger the DAG, and only a HELD batch can be decided on. The whole flow (trigger, run,
DONE, ledger) is the browser test's (tests/test_dashboard_browser.py)."""

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sendit_ops.airflow.dashboard import app as dashboard_app
from tests.test_dashboard import auth_manager, dags  # noqa: F401  (fixtures)

pytestmark = pytest.mark.live  # a migrated Airflow metadata database (as test_review.py)


@pytest.fixture
def reviewer(dags, auth_manager, airflow_db):  # noqa: F811
    """A client logged in as the Airflow user "reviewer" (an admin of the simple auth
    manager), with the session cookie the UI sets, and the page's CSRF token."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    root = FastAPI()
    root.mount("/sendit", dashboard_app)
    token = auth_manager.generate_jwt(SimpleAuthManagerUser(username="reviewer", role="admin"))
    session = TestClient(root, cookies={"_token": token})
    page = session.get("/sendit/")
    csrf = re.search(r"name='csrf' value='([0-9a-f]{64})'", page.text)
    assert page.status_code == 200 and csrf, "the held batch has decision buttons"
    return session, csrf.group(1)


def test_a_decision_without_the_sessions_csrf_token_is_refused(dags, reviewer, auth_manager):  # noqa: F811
    session, csrf = reviewer
    url = "/sendit/review/sendit_a/b00000000000a005"
    assert "value='release'" in session.get("/sendit/").text
    for form in ({"decision": "release"}, {"decision": "release", "csrf": "0" * 64}):
        refused = session.post(url, data=form, follow_redirects=False)
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    # another session's token is not this one's
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    other = auth_manager.generate_jwt(SimpleAuthManagerUser(username="other", role="admin"))
    root = FastAPI()
    root.mount("/sendit", dashboard_app)
    assert (
        TestClient(root, cookies={"_token": other})
        .post(url, data={"decision": "release", "csrf": csrf}, follow_redirects=False)
        .status_code
        == 403
    )
    # logged out: Airflow's own 401, whatever the form says
    anonymous = TestClient(root)
    logged_out = anonymous.post(url, data={"decision": "release", "csrf": csrf})
    assert logged_out.status_code == 401
    # a batch that is not HELD: refused, nothing triggered, nothing recorded
    done = session.post(
        "/sendit/review/sendit_a/b00000000000a001", data={"decision": "release", "csrf": csrf}
    )
    assert done.status_code == 409 and "DONE, not HELD" in done.json()["detail"]
    assert dags["sendit_a"].reviews() == []
