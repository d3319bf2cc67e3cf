-- The usage ledger: one row per finished run (never the prompt, output or key; the key's
-- id only). day and hour are UTC text written at insert, so grouping by them needs no
-- date function of the database.
CREATE TABLE usage_runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    day TEXT NOT NULL,
    hour TEXT NOT NULL,
    key_id TEXT,
    backend TEXT NOT NULL,
    model TEXT,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    duration_ms BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION,
    session_id TEXT
);
CREATE INDEX usage_runs_by_at ON usage_runs (at);
CREATE INDEX usage_runs_by_key ON usage_runs (key_id, at);
