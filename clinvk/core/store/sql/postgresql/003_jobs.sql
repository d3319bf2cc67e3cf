-- Durable jobs and their event logs. runner_node says on which host (and pid namespace)
-- runner_pid is valid: recovery judges only the runners of its own node, never another
-- host's.
CREATE TABLE jobs (
    id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    backend TEXT,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_epoch DOUBLE PRECISION NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    session_id TEXT,
    result TEXT,
    error TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    runner_pid INTEGER,
    runner_start TEXT,
    runner_node TEXT,
    last_sequence BIGINT NOT NULL DEFAULT 0,
    dropped_through BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_created ON jobs (created_epoch, id);
CREATE TABLE job_events (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sequence BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
);
