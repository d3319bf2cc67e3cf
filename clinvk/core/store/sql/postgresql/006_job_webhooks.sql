-- Webhooks of jobs: the callback URL a submit named, and the delivery record (JSON: url,
-- state, attempts, last_status, last_error, delivered_at) every attempt updates.
ALTER TABLE jobs ADD COLUMN callback_url TEXT;
ALTER TABLE jobs ADD COLUMN webhook TEXT;
