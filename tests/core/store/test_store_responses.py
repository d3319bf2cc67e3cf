"""Stored OpenAI responses on every store implementation: the same records back, replace
on save, delete, and retention by age and count on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

from clinvk.core.jobs.responses import ResponseRecord
from clinvk.core.store import Store

KEY = "k" * 24


def _record(rid: str, *, created: float, body: dict | None = None) -> ResponseRecord:
    return ResponseRecord(id=rid, owner=KEY, request={"input": "naïve ☃", "model": "claude"},
                          session_id="s" * 32, body=body, created_epoch=created)


def test_a_record_reads_back_and_a_save_replaces_it(store: Store) -> None:
    table = store.responses
    now = time.time()
    table.save(_record("resp_1", created=now))
    assert table.get("resp_1") == _record("resp_1", created=now)
    finished = _record("resp_1", created=now, body={"status": "completed", "n": 2**40})
    table.save(finished)
    assert table.get("resp_1") == finished
    assert table.get("resp_missing") is None
    table.delete("resp_1")
    assert table.get("resp_1") is None


def test_prune_drops_the_old_and_keeps_the_newest_count(store: Store) -> None:
    table = store.responses
    now = time.time()
    table.save(_record("resp_old", created=now - 3600))
    for i in range(4):
        table.save(_record(f"resp_{i}", created=now - 10 + i))
    assert table.prune(max_age_secs=600, max_count=2) == 3
    assert [r for r in ("resp_old", "resp_0", "resp_1", "resp_2", "resp_3")
            if table.get(r)] == ["resp_2", "resp_3"]


def test_sqlite_writes_queue_behind_the_store_write_lock(sqlite_store) -> None:
    # One writer per process: a stored response waits for the session writes of its own
    # process instead of meeting them in SQLite's busy handler.
    done = threading.Event()
    with sqlite_store._write_lock:
        writer = threading.Thread(target=lambda: (
            sqlite_store.responses.save(_record("resp_w", created=time.time())), done.set()))
        writer.start()
        assert not done.wait(0.3)
    assert done.wait(5)
    writer.join()
    assert sqlite_store.responses.get("resp_w") is not None
