"""SMART EHR launch (app-launch.html, "Launch App: EHR Launch"): an EHR opens the app's launch URL
with ``iss`` (this FHIR server) and an opaque ``launch`` id; the app sends that id back to the
authorization endpoint with the ``launch`` scope, and the token response carries the context the
EHR set (``patient``, ``encounter``). A launch id is good for one client and ``LAUNCH_SECONDS``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fhir_twin.fhir.instant import now
from fhir_twin.security.oauth.grants import digest
from fhir_twin.store import oauth, oauth_launch
from fhir_twin.store.oauth_launch import StoredLaunch
from fhir_twin.store.repository import Repository

LAUNCH_SECONDS = 300
SCOPE = "launch"


@dataclass(frozen=True)
class Launch:
    """A launch made: the id to hand the app, and the app's launch URL carrying it."""

    launch_id: str
    url: str | None


def create(repository: Repository, client_id: str, patient: str, encounter: str | None, iss: str) -> Launch:
    """A launch context for ``client_id``; ValueError naming what is wrong (an unknown client, one
    not registered for the ``launch`` scope, a Patient or Encounter that does not exist)."""
    client = oauth.client(repository, client_id)
    if client is None:
        raise ValueError(f"no client has the id {client_id!r}")
    if SCOPE not in client.scope.split():
        raise ValueError(f"client {client_id!r} is not registered for the 'launch' scope")
    if not oauth.patient_exists(repository, patient):
        raise ValueError(f"there is no Patient/{patient}")
    if encounter is not None and not oauth_launch.encounter_of(repository, encounter, patient):
        raise ValueError(f"there is no Encounter/{encounter} of Patient/{patient}")
    launch_id = secrets.token_urlsafe(24)
    made = now()
    oauth_launch.add(
        repository,
        StoredLaunch(digest(launch_id), client_id, patient, encounter, made, made + timedelta(seconds=LAUNCH_SECONDS)),
    )
    return Launch(launch_id, launch_url(client.launch_uri, iss, launch_id) if client.launch_uri else None)


def launch_url(launch_uri: str, iss: str, launch_id: str) -> str:
    """The app's launch URL with ``iss`` and ``launch`` added to its query."""
    parts = urlsplit(launch_uri)
    query = "&".join(part for part in (parts.query, urlencode({"iss": iss, "launch": launch_id})) if part)
    return urlunsplit(parts._replace(query=query))


def context(repository: Repository, client_id: str, launch_id: str) -> StoredLaunch | None:
    """The live launch context ``launch_id`` names for this client, else None (unknown, expired,
    or made for another client: all alike to the asker)."""
    return oauth_launch.live(repository, digest(launch_id), client_id)


def requested(repository: Repository, grant: Any) -> StoredLaunch | None:
    """The EHR launch an authorization request names, checked once Authlib has trusted its
    redirect URI, so the errors go back to the app (RFC 6749 section 4.1.2.1): ``invalid_scope``
    for the ``launch`` scope or a ``launch`` parameter from a client not registered for it,
    ``invalid_request`` for a ``launch`` scope whose launch is missing, unknown, expired or
    another client's. None for a request that is no EHR launch."""
    from authlib.oauth2.rfc6749 import InvalidRequestError, InvalidScopeError

    oauth_request = grant.request
    payload = oauth_request.payload
    granted = SCOPE in (oauth_request.scope or "").split()
    launch_id = payload.data.get("launch")
    where = {"redirect_uri": grant.redirect_uri, "state": payload.state}
    if not granted and (launch_id or SCOPE in (payload.scope or "").split()):
        raise InvalidScopeError("an EHR launch needs the 'launch' scope, registered for this client", **where)
    if not granted:
        return None
    if not launch_id:
        raise InvalidRequestError("the 'launch' scope needs the launch parameter the EHR gave the app", **where)
    found = context(repository, oauth_request.client.client_id, launch_id)
    if found is None:
        raise InvalidRequestError("the launch is unknown or has expired: launch the app from the EHR again", **where)
    return found
