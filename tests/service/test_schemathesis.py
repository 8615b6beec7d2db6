"""Issue 5, acceptance 5: schemathesis over the service's own `/openapi.json`.

The real app is served by uvicorn on a free port (API only: studies are not executed) with a
bearer token configured and a seeded study, so the generated requests hit real rows; once on a
SQLite file and once on a PostgreSQL database (issue 17, acceptance 2). Every
operation gets schema-valid and schema-violating inputs; every response must be a non-5xx that
conforms to the documented schema (status code, content type, headers, body). At least 1,000
requests are sent in all. Token enforcement is checked for every mutating operation."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.settings import Settings
from tests.service.browser import live_server
from tests.service.conftest import DATABASES, new_database, seed_study

EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "synthetic_small.json").read_text())
TOKEN = "schemathesis-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES_PER_MODE = 60
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_POSTS = {"/api/cost"}  # pure computations, no stored state: no token needed


@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    db = new_database(request, request.param, tmp)
    settings = Settings(db_url=db, results_dir=str(tmp / "ray"), run_studies=False, token=TOKEN)
    with live_server(settings) as url:
        # a study the generated ids can hit: submitted over the API, trials seeded in the store
        r = httpx.post(f"{url}/api/studies", json=EXAMPLE, headers=AUTH, timeout=60)
        assert r.status_code == 201, r.text
        seed_study(db, EXAMPLE, 12)
        yield url


def test_generated_requests_get_no_5xx_and_conform_to_the_schema(server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    sent: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                case.headers = {**(case.headers or {}), **AUTH}  # the token is tested below
                case.call_and_validate(base_url=server, checks=CHECKS, timeout=60)
                sent[case.operation.label] += 1

            try:
                check()
            except Unsatisfiable:
                # nothing to violate (no parameters, no body): only positive cases exist
                assert mode is GenerationMode.NEGATIVE, operation.label
    total = sum(sent.values())
    print(f"\nschemathesis: {total} requests over {len(sent)} operations")
    assert set(sent) == {op.label for op in operations}  # every operation was exercised
    assert total >= 1000


def test_every_mutating_operation_demands_the_token(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json", timeout=60).json()
    checked = 0
    for path, methods in spec["paths"].items():
        concrete = path.replace("{study_id}", "1").replace("{number}", "0")
        for method in methods:
            if method.upper() not in MUTATING or path in OPEN_POSTS:
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = httpx.request(method.upper(), f"{server}{concrete}", headers=headers,
                                  json={}, timeout=60)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
            checked += 1
    assert checked >= 4  # submit, cancel, resume, delete (and any later ones)
    # the seeded study was never touched by a rejected call
    assert httpx.get(f"{server}/api/studies/1", timeout=60).json()["status"] == "queued"
