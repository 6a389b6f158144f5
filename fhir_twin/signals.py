"""Signals the store, the twin and the router send, so cross-cutting concerns (the twin, the
Doctor's queue, audit) hook in at one place.

``version_written`` fires inside the write's database transaction for every stored version
(create, update, patch, delete; bundle entries and loads alike). Receivers connect with the
Repository as ``sender`` and get ``tx`` (the open ``DatabaseTransaction``), the ``version`` stored
and the ``resource`` as a dict (None for a delete).

``interaction_completed`` fires when the router has answered a request or refused it, with the
``completion`` (``fhir_twin.interactions.interaction.Completion``): the principal it acted for,
the interaction, the request, the response or the error, and for a write the transaction it
ran in (``tx``, still open, so a listener writes in the same transaction) and the versions
written.

``twin_changed`` fires, in the same transaction, when a stored version changed the twin of
``patients`` (a set of Patient ids): their facts, or the Patient resource itself (not a new
Patient whose twin holds no facts yet: no model has anything of it to read).
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

version_written = _signals.signal("version-written")
twin_changed = _signals.signal("twin-changed")
interaction_completed = _signals.signal("interaction-completed")
