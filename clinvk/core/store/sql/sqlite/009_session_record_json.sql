-- Each session row carries its record as listings show it, already encoded as JSON
-- (clinvk.core.store.encoded): a page is its rows' bytes joined, without a Python object
-- per row. Written with every change of the row, in the same transaction; NULL only for
-- a record orjson cannot encode (the listing then builds that page the old way). The
-- store fills it for existing rows right after this step (SqliteDatabase._fill_record_json).
ALTER TABLE sessions ADD COLUMN record_json BLOB;
