-- Push jobs: ARGV[3] = count, then 10 fields per job:
--   id, name, queue, payload (JSON), tags (JSON list), tries, timeout, backoff (JSON list),
--   available_at (unix seconds or ''), extra (JSON object of further hash fields or '').
-- Returns the number of jobs pushed.
return push_jobs(4, tonumber(ARGV[3]))
