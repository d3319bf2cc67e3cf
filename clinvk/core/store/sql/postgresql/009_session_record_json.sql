-- Each session row carries its record as listings show it, already encoded as JSON
-- (clinvk.core.store.encoded), as in the SQLite schema: written with every change of the
-- row, in the same transaction; NULL only for a record orjson cannot encode. The store
-- fills it for existing rows right after this step (PostgresDatabase._fill_record_json).
ALTER TABLE sessions ADD COLUMN record_json BYTEA;
