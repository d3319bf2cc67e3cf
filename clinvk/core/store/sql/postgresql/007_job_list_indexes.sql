-- Job listings in page order for every filter shape: a caller's own jobs (owner) and one
-- status walk their own index from the cursor on and stop after one page, instead of
-- scanning the creation index (owner) or sorting every job of that status.
CREATE INDEX jobs_by_owner ON jobs (owner, created_epoch, id);
CREATE INDEX jobs_by_status ON jobs (status, created_epoch, id);
DROP INDEX jobs_status;
