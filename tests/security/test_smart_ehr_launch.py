"""SMART EHR launch against a live server: launches made by the CLI and by ``POST /auth/launch``,
the context in the token response (Authlib's client and fhirclient's, unmodified), the refusals of
a missing, unknown, expired or other client's launch, the signed-in user named by the audit trail,
OpenID nonce replay, and the sign-in rate limit."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import sqlalchemy
from authlib.integrations.requests_client import OAuth2Session
from click.testing import CliRunner
from fhirclient import client as smart_client
from flask import Flask
from werkzeug.serving import make_server

from fhir_twin.app import create_app, services_of
from fhir_twin.cli import main
from fhir_twin.fhir.instant import now
from fhir_twin.security.oauth import sign_in_limit
from fhir_twin.store import oauth_nonce
from fhir_twin.store.repository import Repository
from tests.factories import Server, bearer, encounter, patient
from tests.security.test_smart_launch import VERIFIER, _form

REDIRECT = "https://app.example/callback"
LAUNCH_URI = "https://app.example/launch?app=chart"
SCOPES = "launch launch/encounter openid fhirUser patient/*.rs"
PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def live(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live server with Patients p1 and p2 (Encounter e1 of p1), an EHR-launchable public
    client, a second one, a client without the launch scope, and users."""
    app: Flask = create_app(
        {
            "database_url": module_database_url,
            "auth_mode": "tokens",
            "data_dir": str(tmp_path_factory.mktemp("ehr")),
        }
    )
    seeder = Server(app)
    for patient_id, given in (("p1", "Ann"), ("p2", "Bob")):
        seeder.put(patient(patient_id, name=[{"given": [given], "family": "Test"}]))
    seeder.put(encounter("e1", "p1"))
    runner = CliRunner()

    def cli(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(main, [*args, "--database", module_database_url], input=stdin, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def client(name: str, scopes: str, *launch: str) -> str:
        made = cli("client", "create", "--name", name, "--redirect-uri", REDIRECT, "--scopes", scopes, *launch)
        found = re.search(r"client_id: (\S+)", made)
        assert found is not None
        return found.group(1)

    clients = {
        "chart": client("Chart", SCOPES, "--launch-uri", LAUNCH_URI),
        "other": client("Other", SCOPES),
        "standalone": client("Standalone", "launch/patient openid fhirUser patient/*.rs"),
    }
    cli("user", "create", "doc", "--fhir-user", "Practitioner/d1", "--password-stdin", stdin=PASSWORD + "\n")
    cli("user", "create", "nurse", "--password-stdin", stdin=PASSWORD + "\n")
    cli("user", "create", "bob", "--fhir-user", "Patient/p2", "--password-stdin", stdin=PASSWORD + "\n")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    yield {"base": base, "fhir": base + "/fhir", "app": app, "cli": cli, "runner": runner, **clients}
    server.shutdown()
    thread.join(5)
    services_of(app).repository.engine.dispose()


def _repository(live: dict[str, Any]) -> Repository:
    return services_of(live["app"]).repository


def _launch(live: dict[str, Any], client: str = "chart", patient_id: str = "p1", *encounter_id: str) -> str:
    """A launch id made over HTTP by an EHR holding a system token."""
    ehr = bearer(live["app"], "system/*.rs", name="ehr")
    form = {"client_id": live[client], "patient": patient_id}
    if encounter_id:
        form["encounter"] = encounter_id[0]
    made = requests.post(live["base"] + "/auth/launch", data=form, headers=ehr)
    assert made.status_code == 201, made.text
    return str(made.json()["launch"])


def _sign_in(
    live: dict[str, Any], url: str, username: str = "doc", password: str = PASSWORD
) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 200, page.text
    answer = browser.post(
        live["base"] + "/auth/authorize",
        data={**_form(page.text, "sign-in"), "username": username, "password": password},
        allow_redirects=False,
    )
    return browser, answer


def _allow(live: dict[str, Any], url: str, username: str = "doc") -> requests.Response:
    """Sign in at ``url`` and allow; the authorization endpoint's last answer."""
    browser, consent = _sign_in(live, url, username)
    assert consent.status_code == 200, consent.text
    return browser.post(
        live["base"] + "/auth/authorize",
        data={**_form(consent.text, "consent"), "decision": "allow"},
        allow_redirects=False,
    )


def _session(live: dict[str, Any], client: str = "chart", scope: str = SCOPES) -> OAuth2Session:
    return OAuth2Session(live[client], redirect_uri=REDIRECT, scope=scope, code_challenge_method="S256")


def _url(live: dict[str, Any], session: OAuth2Session, **extra: str) -> str:
    url, _ = session.create_authorization_url(
        live["base"] + "/auth/authorize", aud=live["fhir"], code_verifier=VERIFIER, **extra
    )
    return str(url)


def _query(answer: requests.Response) -> dict[str, str]:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}


def _token(
    live: dict[str, Any], session: OAuth2Session, launch: str, username: str = "doc", **extra: str
) -> dict[str, Any]:
    answer = _allow(live, _url(live, session, launch=launch, **extra), username)
    code = _query(answer)["code"]
    return dict(session.fetch_token(live["base"] + "/auth/token", code=code, code_verifier=VERIFIER))


def test_cli_launch_prints_the_apps_launch_url(live: dict[str, Any]) -> None:
    made = live["cli"]("launch", "create", "--client", live["chart"], "--patient", "p1", "--iss", live["fhir"])
    url = re.search(r"url: (\S+)", made)
    launch = re.search(r"launch: (\S+)", made)
    assert url is not None and launch is not None
    opened = urlparse(url.group(1))
    assert f"{opened.scheme}://{opened.netloc}{opened.path}" == "https://app.example/launch"
    assert parse_qs(opened.query) == {"app": ["chart"], "iss": [live["fhir"]], "launch": [launch.group(1)]}
    session = _session(live)
    token = _token(live, session, launch.group(1))
    assert token["patient"] == "p1" and token["need_patient_banner"] is True and "encounter" not in token


def test_ehr_launch_carries_patient_and_encounter_and_confines_the_token(live: dict[str, Any]) -> None:
    session = _session(live)
    launch = _launch(live, "chart", "p1", "e1")
    browser, consent = _sign_in(live, _url(live, session, launch=launch, state="st-9"))
    assert "The EHR opened it for Patient/p1 and Encounter/e1" in consent.text
    assert 'name="patient"' not in consent.text  # no picker: the EHR chose the patient
    answer = browser.post(
        live["base"] + "/auth/authorize",
        data={**_form(consent.text, "consent"), "decision": "allow"},
        allow_redirects=False,
    )
    params = _query(answer)
    assert params["state"] == "st-9"
    token = session.fetch_token(live["base"] + "/auth/token", code=params["code"], code_verifier=VERIFIER)
    assert (token["patient"], token["encounter"], token["need_patient_banner"]) == ("p1", "e1", True)
    assert session.get(live["fhir"] + "/Patient/p1").status_code == 200
    assert session.get(live["fhir"] + "/Encounter/e1").status_code == 200
    assert session.get(live["fhir"] + "/Patient/p2").status_code == 404


def test_the_launch_context_survives_a_refresh(live: dict[str, Any]) -> None:
    live_cli = live["cli"]
    made = live_cli(
        "client", "create", "--name", "Offline", "--redirect-uri", REDIRECT, "--scopes", SCOPES + " offline_access"
    )
    client_id = re.search(r"client_id: (\S+)", made)
    assert client_id is not None
    live["offline"] = client_id.group(1)
    session = _session(live, "offline", SCOPES + " offline_access")
    token = _token(live, session, _launch(live, "offline", "p1", "e1"))
    fresh = session.refresh_token(live["base"] + "/auth/token", refresh_token=token["refresh_token"])
    assert (fresh["patient"], fresh["encounter"]) == ("p1", "e1")


def test_fhirclient_ehr_launch_reads_the_launch_patient(live: dict[str, Any]) -> None:
    """fhirclient 4 sends PKCE S256 itself, so a public client works with it unchanged."""
    launch = _launch(live)
    app = smart_client.FHIRClient(
        settings={
            "app_id": live["chart"],
            "api_base": live["fhir"],
            "redirect_uri": REDIRECT,
            "scope": "openid fhirUser patient/*.rs",
            "launch_token": launch,
        }
    )
    url = app.authorize_url
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["launch"] == [launch]
    assert query["scope"][0].split()[0] == "launch"
    callback = _allow(live, url)
    assert callback.status_code == 302
    app.handle_callback(callback.headers["Location"])
    assert app.patient_id == "p1"
    assert app.patient is not None and app.patient.name[0].given == ["Ann"]


def test_fhirclient_standalone_launch_picks_the_patient(live: dict[str, Any]) -> None:
    app = smart_client.FHIRClient(
        settings={
            "app_id": live["standalone"],
            "api_base": live["fhir"],
            "redirect_uri": REDIRECT,
            "scope": "openid fhirUser patient/*.rs",
        }
    )
    browser, consent = _sign_in(live, app.authorize_url)
    callback = browser.post(
        live["base"] + "/auth/authorize",
        data={**_form(consent.text, "consent"), "patient": "p2", "decision": "allow"},
        allow_redirects=False,
    )
    app.handle_callback(callback.headers["Location"])
    assert app.patient_id == "p2" and app.patient is not None and app.patient.name[0].given == ["Bob"]


def _refusal(live: dict[str, Any], url: str) -> dict[str, str]:
    answer = requests.get(url, allow_redirects=False)
    return _query(answer)


def test_a_launch_scope_without_a_good_launch_is_refused_to_the_app(live: dict[str, Any]) -> None:
    session = _session(live)
    missing = _refusal(live, _url(live, session, state="s1"))
    assert missing["error"] == "invalid_request" and "launch parameter" in missing["error_description"]
    assert missing["state"] == "s1"
    unknown = _refusal(live, _url(live, session, launch="no-such-launch", state="s2"))
    assert unknown["error"] == "invalid_request" and unknown["state"] == "s2"
    others = _refusal(live, _url(live, session, launch=_launch(live, "other")))
    assert others["error"] == "invalid_request"
    expired = _launch(live)
    with _repository(live).engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE oauth_launch SET expires = :past"), {"past": now() - timedelta(1)})
    assert _refusal(live, _url(live, session, launch=expired))["error"] == "invalid_request"


def test_a_client_without_the_launch_scope_cannot_use_a_launch(live: dict[str, Any]) -> None:
    session = _session(live, "standalone", "launch/patient openid patient/*.rs")
    refused = _refusal(live, _url(live, session, launch="anything", state="s3"))
    assert refused["error"] == "invalid_scope" and refused["state"] == "s3"
    asked = _session(live, "standalone", "launch patient/*.rs")
    assert _refusal(live, _url(live, asked))["error"] == "invalid_scope"


def test_a_launch_with_an_untrusted_redirect_uri_is_never_redirected(live: dict[str, Any]) -> None:
    session = OAuth2Session(
        live["chart"], redirect_uri="https://evil.example/", scope=SCOPES, code_challenge_method="S256"
    )
    answer = requests.get(_url(live, session, launch=_launch(live)), allow_redirects=False)
    assert answer.status_code == 400 and "Location" not in answer.headers


def test_a_patient_user_cannot_take_another_patients_launch(live: dict[str, Any]) -> None:
    session = _session(live)
    browser, consent = _sign_in(live, _url(live, session, launch=_launch(live, "chart", "p1")), "bob")
    answer = browser.post(
        live["base"] + "/auth/authorize",
        data={**_form(consent.text, "consent"), "decision": "allow"},
        allow_redirects=False,
    )
    assert answer.status_code == 403 and "another patient" in answer.json()["error_description"]


def test_http_launch_refusals(live: dict[str, Any]) -> None:
    url = live["base"] + "/auth/launch"
    system = bearer(live["app"], "system/*.rs")
    unauthenticated = requests.post(url, data={"client_id": live["chart"], "patient": "p1"})
    assert unauthenticated.status_code == 401 and "WWW-Authenticate" in unauthenticated.headers
    missing = requests.post(url, data={"client_id": live["chart"]}, headers=system)
    assert missing.status_code == 400 and "client_id and patient" in missing.json()["issue"][0]["diagnostics"]
    other_patient = bearer(live["app"], "patient/*.rs", "p2")
    # Another patient's record answers as a missing one, as a read of it would.
    refused = requests.post(url, data={"client_id": live["chart"], "patient": "p1"}, headers=other_patient)
    assert refused.status_code == 400 and "no Patient/p1" in refused.json()["issue"][0]["diagnostics"]
    men_only = bearer(live["app"], "user/Patient.rs?gender=male user/Encounter.rs")
    refused = requests.post(url, data={"client_id": live["chart"], "patient": "p1"}, headers=men_only)
    assert refused.status_code == 400 and "no Patient/p1" in refused.json()["issue"][0]["diagnostics"]
    no_encounters = bearer(live["app"], "user/Patient.rs")
    refused = requests.post(
        url, data={"client_id": live["chart"], "patient": "p1", "encounter": "e1"}, headers=no_encounters
    )
    assert refused.status_code == 403 and "Encounter/e1" in refused.json()["issue"][0]["diagnostics"]
    for form, named in (
        ({"client_id": "nobody", "patient": "p1"}, "no client"),
        ({"client_id": live["standalone"], "patient": "p1"}, "'launch' scope"),
        ({"client_id": live["chart"], "patient": "p9"}, "Patient/p9"),
        ({"client_id": live["chart"], "patient": "p2", "encounter": "e1"}, "Encounter/e1 of Patient/p2"),
        ({"client_id": live["chart"], "patient": "p1", "encounter": "e9"}, "no Encounter/e9"),
    ):
        answer = requests.post(url, data=form, headers=system)
        assert answer.status_code == 400 and named in answer.json()["issue"][0]["diagnostics"], answer.text
    own = requests.post(url, data={"client_id": live["other"], "patient": "p2"}, headers=other_patient)
    assert own.status_code == 201 and "url" not in own.json()  # a client with no launch URI


def test_cli_launch_refusals(live: dict[str, Any]) -> None:
    database = ["--database", str(_repository(live).engine.url.render_as_string(hide_password=False))]
    runner: CliRunner = live["runner"]
    for args, named in (
        (["--client", "nobody", "--patient", "p1"], "no client"),
        (["--client", live["chart"], "--patient", "p9"], "Patient/p9"),
    ):
        result = runner.invoke(main, ["launch", "create", *args, *database])
        assert result.exit_code == 1 and named in result.output
    create = ["client", "create", "--name", "x", "--redirect-uri", REDIRECT, "--scopes", "launch"]
    bad = runner.invoke(main, [*create, "--launch-uri", "ftp://x", *database])
    assert bad.exit_code == 2 and "--launch-uri" in bad.output
    bare = runner.invoke(main, ["launch", "create", "--client", live["other"], "--patient", "p1", *database])
    assert bare.exit_code == 0 and "launch: " in bare.output and "url: " not in bare.output


def _audit_events(live: dict[str, Any]) -> list[dict[str, Any]]:
    """Every AuditEvent recorded, as stored, newest first."""
    services_of(live["app"]).recorder.flush()
    with _repository(live).engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT rv.body FROM audit_chain c JOIN resource_version rv"
            " ON rv.res_type = 'AuditEvent' AND rv.res_id = c.res_id AND rv.version = 1 ORDER BY c.seq DESC"
        ).all()
    return [json.loads(row[0]) for row in rows]


@pytest.mark.parametrize(("username", "who"), [("doc", {"reference": "Practitioner/d1"}), ("nurse", None)])
def test_the_audit_trail_names_the_signed_in_user(live: dict[str, Any], username: str, who: Any) -> None:
    """The user's fhirUser as a reference, or their user name when they have none."""
    session = _session(live)
    _token(live, session, _launch(live), username=username)
    assert session.get(live["fhir"] + "/Patient/p1").status_code == 200
    read = next(
        event
        for event in _audit_events(live)
        if any(agent["name"] == f"Chart for {username}" for agent in event["agent"])
    )
    humans = [agent for agent in read["agent"] if agent["type"]["coding"][0]["code"] == "humanuser"]
    assert len(humans) == 1 and humans[0]["name"] == ("Practitioner/d1" if who else username)
    if who:
        assert humans[0]["who"] == who
    else:
        assert humans[0]["who"]["identifier"]["value"] == username


def test_a_nonce_is_used_once(live: dict[str, Any]) -> None:
    session = _session(live)
    first = _token(live, session, _launch(live), nonce="n-once")
    assert first["id_token"]
    replayed = _refusal(live, _url(live, _session(live), launch=_launch(live), nonce="n-once"))
    assert replayed["error"] == "invalid_request"
    # Another client may use the same value.
    other = _session(live, "other")
    assert _token(live, other, _launch(live, "other"), nonce="n-once")["patient"] == "p1"


def test_a_nonce_used_while_its_first_request_was_open_gets_no_code(
    live: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests with one nonce, both checked before either was issued a code: the second
    finds the nonce taken when its code is to be issued, and the app gets an error instead."""
    _token(live, _session(live), _launch(live), nonce="n-race")
    monkeypatch.setattr(oauth_nonce, "used", lambda *_: False)  # as if checked before the first's code
    answer = _allow(live, _url(live, _session(live), launch=_launch(live), nonce="n-race", state="s4"))
    refused = _query(answer)
    assert refused["error"] == "invalid_request" and refused["state"] == "s4" and "code" not in refused


def _clear_failures(live: dict[str, Any]) -> None:
    with _repository(live).engine.begin() as connection:
        connection.execute(sqlalchemy.text("DELETE FROM oauth_sign_in_failure"))


def test_failed_sign_ins_for_one_user_are_throttled(live: dict[str, Any]) -> None:
    _clear_failures(live)
    url = _url(live, _session(live), launch=_launch(live))
    for _ in range(sign_in_limit.USER_LIMIT):
        _, wrong = _sign_in(live, url, "doc", "wrong horse")
        assert wrong.status_code == 401
    _, refused = _sign_in(live, url, "doc", PASSWORD)  # even the right password, for now
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= sign_in_limit.WINDOW_SECONDS
    # Seen by every process: another connection to the database finds the same.
    other = Repository(sqlalchemy.create_engine(_repository(live).engine.url), True)
    try:
        assert sign_in_limit.retry_after(other, "doc", None) is not None
    finally:
        other.engine.dispose()
    # Another user from the same address still signs in, and that clears the address's count.
    _, nurse = _sign_in(live, url, "nurse", PASSWORD)
    assert nurse.status_code == 200
    # Once the window has passed, the user signs in again, and the count starts afresh.
    with _repository(live).engine.begin() as connection:
        connection.execute(
            sqlalchemy.text("UPDATE oauth_sign_in_failure SET last = :past"),
            {"past": now() - timedelta(seconds=sign_in_limit.WINDOW_SECONDS + 1)},
        )
    _, wrong = _sign_in(live, url, "doc", "wrong horse")
    assert wrong.status_code == 401
    _, allowed = _sign_in(live, url, "doc", PASSWORD)
    assert allowed.status_code == 200
    assert sign_in_limit.retry_after(_repository(live), "doc", "127.0.0.1") is None
    _clear_failures(live)


def test_failed_sign_ins_from_one_address_are_throttled(live: dict[str, Any]) -> None:
    _clear_failures(live)
    url = _url(live, _session(live), launch=_launch(live))
    for number in range(sign_in_limit.ADDRESS_LIMIT):
        _, wrong = _sign_in(live, url, f"guess-{number}", "wrong horse")
        assert wrong.status_code == 401
    _, refused = _sign_in(live, url, "nurse", PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    _clear_failures(live)


def test_a_scope_asked_twice_is_shown_once_on_the_consent_page(live: dict[str, Any]) -> None:
    """fhirclient adds ``launch`` to an app's scopes that already name it: the user is asked once."""
    launch = _launch(live)
    session = _session(live, scope="launch launch openid fhirUser patient/*.rs")
    _, consent = _sign_in(live, _url(live, session, launch=launch))
    assert consent.status_code == 200, consent.text
    assert consent.text.count("<li><code>launch</code></li>") == 1, consent.text


def test_an_app_may_ask_a_scope_narrowed_by_a_search_within_its_registration(live: dict[str, Any]) -> None:
    """Registered with ``patient/*.rs``, the app may ask for vital signs alone and is granted just that."""
    narrowed = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
    token = _token(live, _session(live, scope=f"launch openid fhirUser {narrowed}"), _launch(live))
    assert narrowed in token["scope"].split() and "patient/*.rs" not in token["scope"].split()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(live["fhir"] + "/Observation", headers=bearer, timeout=10).status_code == 200
    assert requests.get(live["fhir"] + "/Condition", headers=bearer, timeout=10).status_code == 403


def test_an_http_launch_is_audited_as_the_ehrs_reads_of_what_it_puts_in_context(live: dict[str, Any]) -> None:
    ehr = bearer(live["app"], "user/Patient.rs user/Encounter.rs", name="Ward EHR")
    form = {"client_id": live["chart"], "patient": "p1", "encounter": "e1"}
    assert requests.post(live["base"] + "/auth/launch", data=form, headers=ehr).status_code == 201
    reads = [
        entity["what"]["reference"]
        for event in _audit_events(live)
        if any(agent["name"] == "Ward EHR" for agent in event["agent"])
        for entity in event.get("entity", [])
        if "what" in entity
    ]
    assert "Patient/p1/_history/1" in reads and "Encounter/e1/_history/1" in reads
