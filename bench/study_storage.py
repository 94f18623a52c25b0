"""Where studies live: Optuna RDB storages (SQLite by default, PostgreSQL for many machines),
opened with heartbeats so a killed worker's trial is marked failed, and URLs as messages show them."""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from pathlib import Path

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import URL

from tasks.notices import first_line

# A killed worker's trial is marked failed once its heartbeat is GRACE seconds old.
HEARTBEAT_SECONDS = int(os.environ.get("SPBENCH_HEARTBEAT_SECONDS", "10"))
GRACE_SECONDS = 3 * HEARTBEAT_SECONDS
SCHEMA_ATTEMPTS = 5
CONNECT_TIMEOUT_SECONDS = 20  # to reach a PostgreSQL server
LIBPQ_DRIVERS = ("psycopg", "psycopg2")  # PostgreSQL drivers that take libpq's connect_timeout


def storage_url(study_dir: Path, url: str | None) -> str:
    if url:
        return url
    study_dir.mkdir(parents=True, exist_ok=True)
    # built, not pasted: a `?` or `#` in a folder name would end the database path of a pasted URL
    return URL.create("sqlite", database=str((study_dir / "study.db").resolve())).render_as_string()


def check_storage(url: str) -> None:
    """Refuse, with its reason, a storage URL that cannot be opened (not a URL, no driver, no such
    server or folder), before a command makes anything for it."""
    open_storage(url).remove_session()


def parsed_storage_url(url: str, *, named: str = "--storage") -> URL:
    """`url` parsed, or refused as not a storage URL (a port that is not a number, say)."""
    try:
        return sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as err:
        raise ValueError(f"{named} {shown_storage(url)}: not a storage URL ({first_line(err)})") from None


SECRET_PARAMETERS = ("password", "sslpassword")  # a libpq connection string's, in a URL's query


def shown_storage(url: str) -> str:
    """A storage URL as messages print it: as typed, without its password; one with a password (in
    the URL, or as a query parameter) as SQLAlchemy renders it, query keys in order."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # not parsed: the password is what runs to the last @
        return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)
    secrets = [key for key in parsed.query if key.lower() in SECRET_PARAMETERS]
    if parsed.password is None and not secrets:
        return url
    shown = parsed.update_query_dict({key: "***" for key in secrets}).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")  # the query's stars, as the password's are shown


def missing_sqlite_file(url: str, *, named: str = "--storage") -> bool:
    """Whether `url` names an SQLite file that does not exist: opening it would create an empty one."""
    parsed = parsed_storage_url(url, named=named)
    database = parsed.database or ""
    return (parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
            and not database.startswith("file:") and not Path(database).is_file())


def open_storage(url: str, *, retry_failed: int = 0, on_stale=None, existing_file: bool = False,
                 named: str = "--storage") -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so trials of killed workers are marked failed, not left running.
    `retry_failed` > 0 queues such a trial again (up to that many times); `on_stale(study, trial)`
    is called instead, when given. A URL that cannot be opened is refused with its reason, and,
    `existing_file`, an SQLite file that does not exist (opening it to read would create an empty one);
    errors call the URL by `named` (a study's own database was given by no flag)."""
    parsed = parsed_storage_url(url, named=named)
    if existing_file and missing_sqlite_file(url, named=named):
        raise ValueError(f"{named} {shown_storage(url)}: no such database file "
                         "(reading would create an empty one)")
    try:
        return _open_storage(url, parsed, retry_failed=retry_failed, on_stale=on_stale)
    except sqlalchemy.exc.ArgumentError as err:  # NoSuchModuleError too: an unknown scheme
        hint = ("; PostgreSQL's scheme is postgresql://" if parsed.get_backend_name() == "postgres" else
                "; studies are kept in a database: sqlite:///FILE, postgresql://… or mysql://… (Optuna's journal "
                "files keep no heartbeat, which killed trials need)" if parsed.get_backend_name() == "journal" else "")
        raise ValueError(f"{named} {shown_storage(url)}: not a storage URL "
                         f"({first_line(err)}){hint}") from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, RuntimeError) as err:  # unreachable, no driver, old schema
        folder = Path(parsed.database or "").parent
        missing_folder = parsed.get_backend_name() == "sqlite" and not folder.is_dir()
        hint = f"; its folder {folder} does not exist" if missing_folder else ""
        raise ValueError(f"{named} {shown_storage(url)}: cannot open it "
                         f"({first_line(err)}){hint}") from None


def running_without_heartbeat(study: optuna.Study) -> set[int]:
    """The numbers of the study's running trials that never recorded a heartbeat. A live process
    records one moments after it takes a trial; Optuna's sweep passes over a trial without one (it
    has none to go stale), so a process killed in that moment leaves its trial running for ever."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    rdb = getattr(study._storage, "_backend", study._storage)  # inside Optuna's cache
    if not isinstance(rdb, optuna.storages.RDBStorage):
        return set()
    trial, heartbeat = models.TrialModel, models.TrialHeartbeatModel
    with _create_scoped_session(rdb.scoped_session) as session:
        rows = (session.query(trial.number).outerjoin(heartbeat, heartbeat.trial_id == trial.trial_id)
                .filter(trial.study_id == study._study_id, trial.state == optuna.trial.TrialState.RUNNING,
                        heartbeat.trial_id.is_(None)).all())
    return {number for (number,) in rows}


def _open_storage(url: str, parsed: URL, *, retry_failed: int, on_stale) -> optuna.storages.BaseStorage:
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 60}}  # seconds a writer waits for another's lock
    elif parsed.get_driver_name() in LIBPQ_DRIVERS and "connect_timeout" not in parsed.query:
        # a server that accepts and never answers is named, not waited on forever (a URL's own wins)
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    retry = on_stale or (optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retry_failed)
                         if retry_failed else None)

    def connect() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=retry)

    for _ in range(SCHEMA_ATTEMPTS - 1):
        try:
            return connect()
        except sqlalchemy.exc.DatabaseError as err:
            # Workers started together on a fresh database race to create Optuna's tables; the
            # loser's CREATE fails ("already exists") or its schema-version row collides with the
            # winner's (an integrity error), and a second look finds the tables made.
            if not (isinstance(err, sqlalchemy.exc.IntegrityError) or "already exists" in str(err)):
                raise
            time.sleep(random.uniform(0.2, 1.0))
    return connect()


@contextlib.contextmanager
def optuna_warnings_only():
    """Optuna logs warnings (a failed trial's reason among them) but not its INFO lines: a trial's
    "finished with value ... parameters" names no run, and the commands print their own lines."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
