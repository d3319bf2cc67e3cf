-- Stored responses of the Responses dialect: what a client can retrieve again by id. A
-- foreground turn keeps its finished answer in body; a background turn names its job.
CREATE TABLE stored_responses (
    id TEXT PRIMARY KEY,
    owner TEXT,
    job_id TEXT,
    session_id TEXT,
    created_epoch DOUBLE PRECISION NOT NULL,
    request TEXT NOT NULL,
    body TEXT
);
CREATE INDEX stored_responses_created ON stored_responses (created_epoch);
