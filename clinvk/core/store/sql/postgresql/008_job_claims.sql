-- The claim of the gateway process that dispatches or runs a job expires unless renewed
-- (epoch seconds): a job whose gateway died, on any machine, is taken over (still queued)
-- or marked lost (running) once its claim is stale.
ALTER TABLE jobs ADD COLUMN claim_expires DOUBLE PRECISION;
