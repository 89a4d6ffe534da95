-- Delete a job: its record and every index entry naming it (job:removed). ARGV[3] id.
-- Children still waiting for it can never run: they are cancelled. Returns 1 if it existed.
local id = ARGV[3]
if redis.call('EXISTS', K.children(id)) == 1 then
  cancel_children(id)
  redis.call('DEL', K.children(id))
end
return remove_job(id, true) and 1 or 0
