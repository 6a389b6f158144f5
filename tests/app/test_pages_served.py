"""The app's pages as the server sends them: shells without record data, under a strict policy."""

from __future__ import annotations

from flask.testing import FlaskClient

PAGES = ("/app/", "/app/patients", "/app/patients/example", "/app/audit")


def test_pages_are_shells_served_without_a_credential(client: FlaskClient) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.mimetype == "text/html"
        body = response.get_data(as_text=True)
        assert '<script type="module" src="/app/static/' in body
        # No inline script or style: the policy below forbids them, and the pages need none.
        assert "<script>" not in body and "style=" not in body


def test_pages_forbid_inline_scripts_and_other_origins(client: FlaskClient) -> None:
    policy = client.get("/app/").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy
    # The FHIR API keeps its own, stricter policy.
    fhir_policy = client.get("/fhir/metadata").headers["Content-Security-Policy"]
    assert fhir_policy == "default-src 'none'; frame-ancestors 'none'"


def test_the_root_leads_to_the_app(client: FlaskClient) -> None:
    for path in ("/", "/app"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == "/app/"


def test_scripts_and_the_vendored_chart_library_are_served(client: FlaskClient) -> None:
    # Static files are sent from open files: each answer is closed once read.
    with client.get("/app/static/api.js") as script:
        assert script.status_code == 200
        assert script.mimetype in ("text/javascript", "application/javascript")
    with client.get("/app/static/vendor/uplot/uPlot.esm.js") as chart:
        assert chart.status_code == 200 and b"uPlot" in chart.data
    with client.get("/app/static/vendor/uplot/LICENSE") as licence:
        assert b"MIT License" in licence.data


def test_a_page_for_an_impossible_id_is_not_found(client: FlaskClient) -> None:
    response = client.get("/app/patients/" + "x" * 80)
    assert response.status_code == 404
