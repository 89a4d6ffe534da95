-- Delete a job: its record and every index entry naming it (job:removed). ARGV[3] id.
-- Children waiting for it are cancelled by the caller first. Returns 1 if it existed.
return remove_job(ARGV[3], true) and 1 or 0
