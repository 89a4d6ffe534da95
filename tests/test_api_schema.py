"""schemathesis against the served openapi.json: no 500, every response matches the document.

Each operation gets a bounded number of generated cases (MAX_EXAMPLES), run through the WSGI app
on the test's Redis; the whole run stays well under a minute.
"""

from __future__ import annotations

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.api_fixtures import API, app  # noqa: F401  (fixture)

MAX_EXAMPLES = 5


def test_api_conforms_to_its_openapi_document(hz, app):  # noqa: F811
    app.config.update(HORIZON_SSE_HEARTBEAT=0.05, HORIZON_SSE_LIFETIME=0.1)
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            # positive_data_acceptance is off: a schema-valid body naming an unregistered job (or an
            # unknown parent) is a documented 422, and an idempotency key reused with another body a 409
            case.call_and_validate(excluded_checks=[checks.positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # collect every failing operation, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_served_route_is_documented(app):  # noqa: F811
    import re

    spec = app.test_client().get(f"{API}/openapi.json").get_json()
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API + "/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len(API) :])
            served |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, m) for path, ops in spec["paths"].items() for m in ops if m != "parameters"}
    assert served == documented


@pytest.fixture
def config_data(config_data):
    config_data["schedule"] = [{"name": "from-config", "job": "tests.noop", "cron": "0 3 * * *", "tries": 2}]
    return config_data


def test_schedule_responses_match_the_document(hz, app):  # noqa: F811
    """Schedules as served (config and API, with and without run options) against their documented
    response schemas, which list every field: the generated cases above rarely create one."""
    client = app.test_client()
    document = client.get(f"{API}/openapi.json").get_json()

    def check(path: str, method: str, status: int, response) -> dict:
        assert response.status_code == status, response.get_data(as_text=True)
        schema = document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.Draft202012Validator({**document, **schema})  # its $refs resolve in the document
        body = response.get_json()
        assert validator.is_valid(body), list(validator.iter_errors(body))
        return body

    body = {"name": "api", "job": "tests.noop", "every": 60, "tries": 3, "timeout": 90.5, "backoff": [5, 50]}
    created = check("/schedules", "post", 201, client.post(f"{API}/schedules", json=body))
    assert (created["tries"], created["timeout"], created["backoff"]) == (3, 90.5, [5.0, 50.0])
    check("/schedules", "post", 201, client.post(f"{API}/schedules", json={"name": "bare", "job": "tests.noop",
                                                                          "every": 60}))
    listed = check("/schedules", "get", 200, client.get(f"{API}/schedules"))
    assert {s["name"]: s["tries"] for s in listed} == {"from-config": 2, "api": 3, "bare": None}
    for name in ("from-config", "api", "bare"):
        check("/schedules/{name}", "get", 200, client.get(f"{API}/schedules/{name}"))
