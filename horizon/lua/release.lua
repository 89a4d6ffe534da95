-- Put a reserved job back without counting the attempt (a worker stopping at once).
-- ARGV[3] id, ARGV[4] attempt. Returns 1 when released.
local state = finish_one('release', ARGV[3], tonumber(ARGV[4]), '0', '')
flush_clock()
return state == 'pending' and 1 or 0
