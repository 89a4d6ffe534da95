-- Delete a job: its record and every index entry naming it (job:removed). ARGV[3] id.
-- A job that had not finished takes the children still waiting for it with it (they are
-- cancelled) and counts as failed in its batch (see remove_job). Returns 1 if it existed.
return remove_job(ARGV[3], true) and 1 or 0
