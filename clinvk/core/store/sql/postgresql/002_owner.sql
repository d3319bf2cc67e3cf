-- Ownership: the key id of the creating API key; NULL (rows made without keys) is
-- visible to admins and key-less callers only.
ALTER TABLE sessions ADD COLUMN owner TEXT;
CREATE INDEX sessions_by_owner ON sessions (owner, last_used, id);
