"""Fixtures and helpers shared by the API tests (imported by tests/test_api*.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from web import create_app

API = "/horizon/api"


@pytest.fixture
def app(hz):
    application = create_app(hz.settings, hz)
    application.config.update(HORIZON_SSE_HEARTBEAT=0.1, HORIZON_SSE_LIFETIME=0.5)
    return application


@pytest.fixture
def client(app):
    return app.test_client()


def get(client, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = client.get(API + path, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def post(client, path: str, body: Any = None, status: int = 200, **kwargs: Any) -> Any:
    data = None if body is None else json.dumps(body)
    response = client.post(API + path, data=data, content_type="application/json", **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def assert_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]
    return body["error"]["message"]
