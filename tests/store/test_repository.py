"""The Repository on its own: versioned writes, reads, id-ordered search pages and history.

R4 http.html#versioning (every write is a new version, deletes included), http.html#history
(newest first, ``_since``, ``_at``) and http.html#concurrency (a stale version is refused).
Timestamps are fixed values here, so ``since``/``at`` windows are exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from fhir_twin.errors import Conflict
from fhir_twin.search.parameters import parameter
from fhir_twin.search.query import Criterion, Search, TokenValue
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import DatabaseTransaction, Repository, Version

T0 = datetime(2024, 3, 5, 10, 0, 0)

Key = tuple[str, str, int]

BASE = "http://localhost/fhir"


@pytest.fixture
def repo(database_url: str) -> Iterator[Repository]:
    engine = make_engine(database_url)
    migrate(engine)
    yield Repository(engine)
    engine.dispose()


def minute(value: float) -> datetime:
    """``T0`` plus ``value`` minutes."""
    return T0 + timedelta(minutes=value)


def make(res_id: str, number: int, when: float, *, res_type: str = "Patient", delete: bool = False) -> Version:
    """A version as the interactions would build it: POST (201) first, PUT (200) after, DELETE (200) with no body."""
    method = "DELETE" if delete else ("POST" if number == 1 else "PUT")
    body = None if delete else f'{{"resourceType":"{res_type}","id":"{res_id}","meta":{{"versionId":"{number}"}}}}'
    return Version(
        res_type=res_type,
        res_id=res_id,
        version=number,
        last_updated=minute(when),
        method=method,
        status=201 if method == "POST" else 200,
        body=body,
    )


def store(repo: Repository, *versions: Version) -> None:
    """Write each version in its own transaction, as separate requests would."""
    for version in versions:
        with repo.transaction(write=True) as tx:
            tx.write(version, [])


def key(version: Version) -> Key:
    return version.res_type, version.res_id, version.version


def without_seq(version: Version | None) -> Version | None:
    return None if version is None else dataclasses.replace(version, seq=0)


# --- reads after writes -------------------------------------------------------------------


def test_versions_one_to_three_are_stored_and_read_back(repo: Repository) -> None:
    """http.html#vread: each version stays readable; ``current`` is the newest."""
    versions = [make("a", 1, 0), make("a", 2, 1), make("a", 3, 2)]
    store(repo, *versions)
    seqs: list[int] = []
    with repo.transaction() as tx:
        assert without_seq(tx.current("Patient", "a")) == versions[2]
        for written in versions:
            found = tx.version("Patient", "a", written.version)
            assert found is not None and without_seq(found) == written
            seqs.append(found.seq)
        assert tx.version("Patient", "a", 4) is None
        assert tx.version("Patient", "b", 1) is None
        assert tx.version("Observation", "a", 1) is None
        assert tx.current("Patient", "b") is None
        assert tx.current("Observation", "a") is None
        assert tx.exists("Patient", "a")
        assert not tx.exists("Patient", "b")
        assert not tx.exists("Observation", "a")
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > 0
    # The same reads as statements of their own, outside any transaction (a read's, a vread's).
    alone = repo.current("Patient", "a")
    assert alone is not None and without_seq(alone) == versions[2] and alone.seq == seqs[2]
    assert isinstance(alone.last_updated, datetime) and isinstance(alone.status, int)
    for written in versions:
        assert without_seq(repo.version("Patient", "a", written.version)) == written
    for missing in (0, 4, 2**31, -1):
        assert repo.version("Patient", "a", missing) is None
    assert repo.current("Patient", "b") is None and repo.current("Observation", "a") is None
    assert repo.version("Patient", "b", 1) is None


def test_a_delete_is_the_current_version_and_the_resource_still_exists(repo: Repository) -> None:
    """http.html#delete: a delete is a version without a body; the identity stays known."""
    store(repo, make("a", 1, 0), make("a", 2, 1, delete=True))
    with repo.transaction() as tx:
        current = tx.current("Patient", "a")
        assert current is not None and current.deleted and current.body is None and current.method == "DELETE"
        assert current.version == 2
        assert tx.exists("Patient", "a")
        assert tx.search(Search(("Patient",)), BASE).matches == []
    alone = repo.current("Patient", "a")
    assert alone is not None and alone.deleted and alone.version == 2
    store(repo, make("a", 3, 2))
    with repo.transaction() as tx:
        assert without_seq(tx.current("Patient", "a")) == make("a", 3, 2)
    assert without_seq(repo.current("Patient", "a")) == make("a", 3, 2)


# --- stale writes and rollback -----------------------------------------------------------


@pytest.mark.parametrize(
    ("already", "attempt"),
    [
        pytest.param([1, 2], 2, id="version-2-twice"),
        pytest.param([1], 1, id="version-1-twice"),
        pytest.param([1], 3, id="skips-a-version"),
        pytest.param([], 2, id="version-2-of-nothing"),
        pytest.param([1, 2, 3], 2, id="older-than-current"),
    ],
)
def test_write_refuses_a_stale_version(repo: Repository, already: list[int], attempt: int) -> None:
    """http.html#concurrency: a version that does not follow the current one is a Conflict."""
    store(repo, *(make("a", n, n) for n in already))
    with pytest.raises(Conflict), repo.transaction(write=True) as tx:
        tx.write(make("a", attempt, 10), [])
    with repo.transaction() as tx:
        current = tx.current("Patient", "a")
        assert (current.version if current else None) == (already[-1] if already else None)
        assert tx.exists("Patient", "a") == bool(already)
        page = tx.history("Patient", "a", since=None, at=None, count=10, after=None, with_total=True)
    assert [v.version for v in page.versions] == sorted(already, reverse=True)
    assert page.total == len(already)


def test_writing_version_two_twice_in_one_unit_keeps_neither(repo: Repository) -> None:
    """The Conflict rolls back the transaction, including the first (valid) version 2."""
    store(repo, make("a", 1, 0))
    with pytest.raises(Conflict), repo.transaction(write=True) as tx:
        tx.write(make("a", 2, 1), [])
        tx.write(make("a", 2, 2), [])
    with repo.transaction() as tx:
        assert without_seq(tx.current("Patient", "a")) == make("a", 1, 0)
        assert tx.version("Patient", "a", 2) is None


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Boom, id="exception"),
        pytest.param(Conflict, id="stale-write"),
    ],
)
def test_an_exception_in_a_write_unit_rolls_back_everything(repo: Repository, failure: type[Exception]) -> None:
    """One tx is one transaction: nothing written in it survives an exception, which propagates."""
    store(repo, make("a", 1, 0))
    with pytest.raises(failure), repo.transaction(write=True) as tx:
        tx.write(make("a", 2, 1), [])
        tx.write(make("b", 1, 1), [])
        tx.write(make("o", 1, 1, res_type="Observation"), [])
        tx.write(make("b", 2, 2, delete=True), [])
        if failure is Boom:
            raise Boom("stop")
        tx.write(make("a", 2, 3), [])  # stale: version 2 was just written
    with repo.transaction() as tx:
        assert without_seq(tx.current("Patient", "a")) == make("a", 1, 0)
        assert tx.version("Patient", "a", 2) is None
        assert not tx.exists("Patient", "b")
        assert not tx.exists("Observation", "o")
        assert tx.version("Patient", "b", 1) is None
        page = tx.history(None, None, since=None, at=None, count=10, after=None, with_total=True)
    assert [key(v) for v in page.versions] == [("Patient", "a", 1)]
    assert page.total == 1
    # The repository is still usable afterwards.
    store(repo, make("a", 2, 5))
    with repo.transaction() as tx:
        assert without_seq(tx.current("Patient", "a")) == make("a", 2, 5)


def test_a_prelude_runs_first_in_the_next_write_transaction_only(repo: Repository) -> None:
    """``Repository.prelude``: the work runs once, first, in the first write transaction opened
    within it (not in a read transaction, not in a nested or later one), and what it writes
    commits or rolls back with that transaction."""
    calls: list[bool] = []

    def work(tx: DatabaseTransaction) -> None:
        calls.append(tx.writable)
        tx.write(make(f"p{len(calls)}", 1, 0), [])

    with repo.prelude(work):
        with repo.transaction() as tx:
            assert not tx.exists("Patient", "p1")
        with repo.transaction(write=True) as tx:
            assert tx.exists("Patient", "p1")
            with repo.transaction(write=True):
                tx.write(make("q", 1, 0), [])
        with repo.transaction(write=True) as tx:
            tx.write(make("r", 1, 0), [])
    assert calls == [True]
    with repo.transaction() as tx:
        assert [tx.exists("Patient", res_id) for res_id in ("p1", "q", "r")] == [True, True, True]

    with pytest.raises(Boom), repo.prelude(work), repo.transaction(write=True):
        raise Boom("stop")
    with repo.transaction(write=True) as tx:
        tx.write(make("s", 1, 0), [])  # no prelude left over after the block
    assert calls == [True, True]
    with repo.transaction() as tx:
        assert not tx.exists("Patient", "p2")  # rolled back with its transaction
        assert tx.exists("Patient", "s")


# --- search ------------------------------------------------------------------------------


@pytest.fixture
def patients(repo: Repository) -> Repository:
    """Patients a-e (c updated, f deleted) and an Observation, written out of id order."""
    store(
        repo,
        make("e", 1, 0),
        make("a", 1, 1),
        make("c", 1, 2),
        make("f", 1, 3),
        make("b", 1, 4),
        make("d", 1, 5),
        make("c", 2, 6),
        make("f", 2, 7, delete=True),
        make("b0", 1, 8, res_type="Observation"),
    )
    return repo


def test_search_pages_through_live_resources_in_id_order(patients: Repository) -> None:
    """Keyset paging: each page starts just after the previous page's last row."""
    pages: list[list[Key]] = []
    cursor: str | None = None
    with patients.transaction() as tx:
        while True:
            page = tx.search(Search(("Patient",), count=2, cursor=cursor), BASE)
            pages.append([key(v) for v in page.matches])
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert pages == [
        [("Patient", "a", 1), ("Patient", "b", 1)],
        [("Patient", "c", 2), ("Patient", "d", 1)],
        [("Patient", "e", 1)],
    ]


def _by_id(*ids: str) -> Criterion:
    found = parameter("Patient", "_id")
    assert found is not None
    return Criterion(found, values=tuple(TokenValue(None, res_id) for res_id in ids))


@pytest.mark.parametrize(
    ("ids", "count", "expected"),
    [
        pytest.param(None, 10, ["a", "b", "c", "d", "e"], id="all"),
        pytest.param(None, 1, ["a"], id="count"),
        pytest.param(("d", "a", "f", "zz"), 10, ["a", "d"], id="ids-skip-deleted-and-unknown"),
        pytest.param(("d", "a", "e"), 1, ["a"], id="ids-count"),
    ],
)
def test_search_arguments(patients: Repository, ids: tuple[str, ...] | None, count: int, expected: list[str]) -> None:
    conditions = (_by_id(*ids),) if ids is not None else ()
    with patients.transaction() as tx:
        found = tx.search(Search(("Patient",), conditions=conditions, count=count), BASE).matches
    assert [v.res_id for v in found] == expected
    assert all(v.res_type == "Patient" and not v.deleted for v in found)
    assert all(v.version == (2 if v.res_id == "c" else 1) for v in found)


# --- history -----------------------------------------------------------------------------

# a: v1 @10, v2 @20, v3 @30; b: v1 @15, v2 (delete) @40; o: v1 @20 (same instant as a v2, written after it).
HISTORY = [
    make("a", 1, 10),
    make("b", 1, 15),
    make("a", 2, 20),
    make("o", 1, 20, res_type="Observation"),
    make("a", 3, 30),
    make("b", 2, 40, delete=True),
]
NEWEST_FIRST = [
    ("Patient", "b", 2),
    ("Patient", "a", 3),
    ("Observation", "o", 1),
    ("Patient", "a", 2),
    ("Patient", "b", 1),
    ("Patient", "a", 1),
]


@pytest.fixture
def history_repo(repo: Repository) -> Repository:
    store(repo, *HISTORY)
    return repo


@pytest.mark.parametrize(
    ("res_type", "res_id"),
    [
        pytest.param(None, None, id="system"),
        pytest.param("Patient", None, id="type"),
        pytest.param("Observation", None, id="other-type"),
        pytest.param("Patient", "a", id="instance"),
        pytest.param("Patient", "b", id="deleted-instance"),
        pytest.param("Patient", "zz", id="unknown-instance"),
        pytest.param("Encounter", None, id="empty-type"),
    ],
)
def test_history_is_newest_first(history_repo: Repository, res_type: str | None, res_id: str | None) -> None:
    """http.html#history: versions in reverse order of writing; ties on time keep write order."""
    expected = [
        k for k in NEWEST_FIRST if (res_type is None or k[0] == res_type) and (res_id is None or k[1] == res_id)
    ]
    with history_repo.transaction() as tx:
        page = tx.history(res_type, res_id, since=None, at=None, count=100, after=None, with_total=True)
    assert [key(v) for v in page.versions] == expected
    assert page.total == len(expected)
    by_key = {key(v): v for v in HISTORY}
    assert [without_seq(v) for v in page.versions] == [by_key[k] for k in expected]


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        pytest.param(minute(0), NEWEST_FIRST, id="before-all"),
        pytest.param(minute(20), NEWEST_FIRST[:4], id="exactly-at-a-version"),
        pytest.param(minute(20) + timedelta(microseconds=1), NEWEST_FIRST[:2], id="just-after"),
        pytest.param(minute(40), NEWEST_FIRST[:1], id="the-delete"),
        pytest.param(minute(41), [], id="after-all"),
    ],
)
def test_history_since(history_repo: Repository, since: datetime, expected: list[Key]) -> None:
    """``_since``: versions written at or after the instant."""
    with history_repo.transaction() as tx:
        page = tx.history(None, None, since=since, at=None, count=100, after=None, with_total=True)
    assert [key(v) for v in page.versions] == expected
    assert page.total == len(expected)


MS = timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(minute(0), minute(5), [], id="before-anything"),
        pytest.param(minute(10), minute(10) + MS, [("Patient", "a", 1)], id="at-the-first-write"),
        pytest.param(
            minute(20),
            minute(20) + MS,
            [("Observation", "o", 1), ("Patient", "a", 2), ("Patient", "b", 1)],
            id="instant-of-a-write-excludes-the-replaced-version",
        ),
        pytest.param(
            minute(20) - MS,
            minute(20),
            [("Patient", "b", 1), ("Patient", "a", 1)],
            id="end-is-exclusive",
        ),
        pytest.param(
            minute(25),
            minute(25) + MS,
            [("Observation", "o", 1), ("Patient", "a", 2), ("Patient", "b", 1)],
            id="between-writes",
        ),
        pytest.param(
            minute(12),
            minute(22),
            [("Observation", "o", 1), ("Patient", "a", 2), ("Patient", "b", 1), ("Patient", "a", 1)],
            id="window-spanning-a-replacement",
        ),
        pytest.param(
            minute(35),
            minute(36),
            [("Patient", "a", 3), ("Observation", "o", 1), ("Patient", "b", 1)],
            id="long-after-the-last-write",
        ),
    ],
)
def test_history_at(history_repo: Repository, start: datetime, end: datetime, expected: list[Key]) -> None:
    """``_at``: versions that were current at some point in ``[start, end)``."""
    with history_repo.transaction() as tx:
        page = tx.history(None, None, since=None, at=(start, end), count=100, after=None, with_total=True)
    assert [key(v) for v in page.versions] == expected
    assert page.total == len(expected)


@pytest.mark.parametrize("count", [1, 2, 4, 6, 7])
def test_history_pages_by_cursor(history_repo: Repository, count: int) -> None:
    """The keyset cursor ``(last_updated, seq)`` walks every version exactly once, in order."""
    seen: list[Key] = []
    after: tuple[datetime, int] | None = None
    with history_repo.transaction() as tx:
        for _ in range(len(HISTORY) + 1):
            page = tx.history(None, None, since=None, at=None, count=count, after=after, with_total=True)
            assert page.total == len(HISTORY)
            assert len(page.versions) <= count
            seen.extend(key(v) for v in page.versions)
            if len(page.versions) < count:
                break
            after = page.versions[-1].last_updated, page.versions[-1].seq
        assert tx.history(None, None, since=None, at=None, count=count, after=None, with_total=False).total is None
    assert seen == NEWEST_FIRST


def test_history_cursor_ignores_versions_written_later(history_repo: Repository) -> None:
    """A version written while a client pages sorts before its cursor, so the next page is unchanged."""
    with history_repo.transaction() as tx:
        first = tx.history(None, None, since=None, at=None, count=3, after=None, with_total=False)
    cursor = first.versions[-1].last_updated, first.versions[-1].seq
    store(history_repo, make("a", 4, 50), make("n", 1, 50))
    with history_repo.transaction() as tx:
        rest = tx.history(None, None, since=None, at=None, count=10, after=cursor, with_total=True)
    assert [key(v) for v in first.versions + rest.versions] == NEWEST_FIRST
    assert rest.total == len(HISTORY) + 2
