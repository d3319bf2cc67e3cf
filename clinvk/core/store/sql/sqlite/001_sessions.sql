-- Sessions, their tags and the exact counters behind count() and /health.
-- Timestamps are REAL epoch seconds (sortable, indexable).

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    backend TEXT NOT NULL,
    backend_session_id TEXT,
    created_at REAL NOT NULL,
    last_used REAL NOT NULL,
    working_dir TEXT NOT NULL,
    model TEXT,
    initial_prompt TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'completed', 'error', 'paused')),
    turn_count INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    tags TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    error_message TEXT,
    parent_id TEXT,
    lease_owner TEXT,
    lease_expires REAL
);

-- One index per listing shape, each ending in (last_used, id) so a page is an index
-- range scan in ORDER BY order: no sort, no full scan.
CREATE INDEX sessions_by_last_used ON sessions (last_used, id);
CREATE INDEX sessions_by_backend ON sessions (backend, last_used, id);
CREATE INDEX sessions_by_status ON sessions (status, last_used, id);
CREATE INDEX sessions_by_backend_status ON sessions (backend, status, last_used, id);
CREATE INDEX sessions_by_working_dir ON sessions (working_dir, last_used, id);

-- Tags: one row per (session, tag) carrying copies of backend, status and last_used
-- (kept in sync by triggers), so "tag = x [AND backend/status = y] ORDER BY last_used
-- DESC" is an index range scan too.
CREATE TABLE session_tags (
    session_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    last_used REAL NOT NULL,
    PRIMARY KEY (session_id, tag)
) WITHOUT ROWID;
CREATE INDEX session_tags_by_tag ON session_tags (tag, last_used, session_id);
CREATE INDEX session_tags_by_tag_backend ON session_tags (tag, backend, last_used, session_id);
CREATE INDEX session_tags_by_tag_status ON session_tags (tag, status, last_used, session_id);
CREATE INDEX session_tags_by_tag_backend_status
    ON session_tags (tag, backend, status, last_used, session_id);

-- Exact counts per (backend, status) and per (tag, backend, status), so count() and
-- every page total without a working_dir filter are O(1).
CREATE TABLE session_counts (
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (backend, status)
) WITHOUT ROWID;
CREATE TABLE tag_counts (
    tag TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tag, backend, status)
) WITHOUT ROWID;

CREATE TRIGGER sessions_after_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO session_counts (backend, status, n) VALUES (NEW.backend, NEW.status, 1)
        ON CONFLICT (backend, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sessions_after_delete AFTER DELETE ON sessions BEGIN
    UPDATE session_counts SET n = n - 1
        WHERE backend = OLD.backend AND status = OLD.status;
    DELETE FROM session_tags WHERE session_id = OLD.id;
END;

CREATE TRIGGER sessions_after_update_kind AFTER UPDATE OF backend, status ON sessions
WHEN OLD.backend IS NOT NEW.backend OR OLD.status IS NOT NEW.status BEGIN
    UPDATE session_counts SET n = n - 1
        WHERE backend = OLD.backend AND status = OLD.status;
    INSERT INTO session_counts (backend, status, n) VALUES (NEW.backend, NEW.status, 1)
        ON CONFLICT (backend, status) DO UPDATE SET n = n + 1;
    UPDATE session_tags SET backend = NEW.backend, status = NEW.status
        WHERE session_id = NEW.id;
END;

CREATE TRIGGER sessions_after_update_last_used AFTER UPDATE OF last_used ON sessions
WHEN NEW.last_used IS NOT OLD.last_used AND NEW.tags <> '[]' BEGIN
    UPDATE session_tags SET last_used = NEW.last_used WHERE session_id = NEW.id;
END;

CREATE TRIGGER session_tags_after_insert AFTER INSERT ON session_tags BEGIN
    INSERT INTO tag_counts (tag, backend, status, n)
        VALUES (NEW.tag, NEW.backend, NEW.status, 1)
        ON CONFLICT (tag, backend, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER session_tags_after_delete AFTER DELETE ON session_tags BEGIN
    UPDATE tag_counts SET n = n - 1
        WHERE tag = OLD.tag AND backend = OLD.backend AND status = OLD.status;
END;

CREATE TRIGGER session_tags_after_update_kind AFTER UPDATE OF backend, status ON session_tags
WHEN OLD.backend IS NOT NEW.backend OR OLD.status IS NOT NEW.status BEGIN
    UPDATE tag_counts SET n = n - 1
        WHERE tag = OLD.tag AND backend = OLD.backend AND status = OLD.status;
    INSERT INTO tag_counts (tag, backend, status, n)
        VALUES (NEW.tag, NEW.backend, NEW.status, 1)
        ON CONFLICT (tag, backend, status) DO UPDATE SET n = n + 1;
END;
