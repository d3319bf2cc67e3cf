-- The usage ledger: one row per finished run (never the prompt, output or key; the key's
-- id only). day and hour are UTC text written at insert, so grouping by them needs no
-- date function of the database. IF NOT EXISTS: stores written before this migration
-- created the same table on first use and keep their rows.
CREATE TABLE IF NOT EXISTS usage_runs (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    day TEXT NOT NULL,
    hour TEXT NOT NULL,
    key_id TEXT,
    backend TEXT NOT NULL,
    model TEXT,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    duration_ms INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost_usd REAL,
    session_id TEXT
);
CREATE INDEX IF NOT EXISTS usage_runs_by_at ON usage_runs (at);
CREATE INDEX IF NOT EXISTS usage_runs_by_key ON usage_runs (key_id, at);
