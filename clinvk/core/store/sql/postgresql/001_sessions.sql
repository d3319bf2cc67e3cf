-- Sessions, their tags and the exact counters behind count() and /health: the same
-- tables, columns and meanings as the SQLite schema. Timestamps are epoch seconds in
-- DOUBLE PRECISION (sortable, indexable, the same values SQLite keeps as REAL).

-- Ids collate as bytes ("C"), as in SQLite: prefix ranges and cursors compare alike.
CREATE TABLE sessions (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    backend TEXT NOT NULL,
    backend_session_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    last_used DOUBLE PRECISION NOT NULL,
    working_dir TEXT NOT NULL,
    model TEXT,
    initial_prompt TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'completed', 'error', 'paused')),
    turn_count INTEGER NOT NULL DEFAULT 0,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION,
    tags TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    error_message TEXT,
    parent_id TEXT,
    lease_owner TEXT,
    lease_expires DOUBLE PRECISION
);

-- One index per listing shape, each ending in (last_used, id): a page is a backward
-- index range scan in ORDER BY order, and a cursor's row comparison starts the range.
CREATE INDEX sessions_by_last_used ON sessions (last_used, id);
CREATE INDEX sessions_by_backend ON sessions (backend, last_used, id);
CREATE INDEX sessions_by_status ON sessions (status, last_used, id);
CREATE INDEX sessions_by_backend_status ON sessions (backend, status, last_used, id);
CREATE INDEX sessions_by_working_dir ON sessions (working_dir, last_used, id);

-- Tags: one row per (session, tag) carrying copies of backend, status and last_used
-- (kept in sync by triggers), so a tag listing is an index range scan too.
CREATE TABLE session_tags (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    last_used DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, tag)
);
CREATE INDEX session_tags_by_tag ON session_tags (tag, last_used, session_id);
CREATE INDEX session_tags_by_tag_backend
    ON session_tags (tag, backend, last_used, session_id);
CREATE INDEX session_tags_by_tag_status
    ON session_tags (tag, status, last_used, session_id);
CREATE INDEX session_tags_by_tag_backend_status
    ON session_tags (tag, backend, status, last_used, session_id);

-- Exact counts per (backend, status) and per (tag, backend, status): count() and every
-- page total without a working_dir or owner filter are a read of a few rows.
CREATE TABLE session_counts (
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (backend, status)
);
CREATE TABLE tag_counts (
    tag TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tag, backend, status)
);

CREATE FUNCTION clinvk_count_session(b TEXT, s TEXT, delta INTEGER) RETURNS VOID
LANGUAGE sql AS $$
    INSERT INTO session_counts (backend, status, n) VALUES (b, s, delta)
        ON CONFLICT (backend, status) DO UPDATE SET n = session_counts.n + delta;
$$;

CREATE FUNCTION clinvk_count_tag(t TEXT, b TEXT, s TEXT, delta INTEGER) RETURNS VOID
LANGUAGE sql AS $$
    INSERT INTO tag_counts (tag, backend, status, n) VALUES (t, b, s, delta)
        ON CONFLICT (tag, backend, status) DO UPDATE SET n = tag_counts.n + delta;
$$;

CREATE FUNCTION clinvk_sessions_counted() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM clinvk_count_session(NEW.backend, NEW.status, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM clinvk_count_session(OLD.backend, OLD.status, -1);
    ELSE
        IF OLD.backend IS DISTINCT FROM NEW.backend OR OLD.status IS DISTINCT FROM NEW.status
        THEN
            PERFORM clinvk_count_session(OLD.backend, OLD.status, -1);
            PERFORM clinvk_count_session(NEW.backend, NEW.status, 1);
            UPDATE session_tags SET backend = NEW.backend, status = NEW.status
                WHERE session_id = NEW.id;
        END IF;
        IF NEW.last_used IS DISTINCT FROM OLD.last_used AND NEW.tags <> '[]' THEN
            UPDATE session_tags SET last_used = NEW.last_used WHERE session_id = NEW.id;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sessions_counted AFTER INSERT OR DELETE OR UPDATE OF backend, status, last_used
    ON sessions FOR EACH ROW EXECUTE FUNCTION clinvk_sessions_counted();

CREATE FUNCTION clinvk_tags_counted() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM clinvk_count_tag(NEW.tag, NEW.backend, NEW.status, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM clinvk_count_tag(OLD.tag, OLD.backend, OLD.status, -1);
    ELSIF OLD.backend IS DISTINCT FROM NEW.backend OR OLD.status IS DISTINCT FROM NEW.status
    THEN
        PERFORM clinvk_count_tag(OLD.tag, OLD.backend, OLD.status, -1);
        PERFORM clinvk_count_tag(NEW.tag, NEW.backend, NEW.status, 1);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER session_tags_counted AFTER INSERT OR DELETE OR UPDATE OF backend, status
    ON session_tags FOR EACH ROW EXECUTE FUNCTION clinvk_tags_counted();
