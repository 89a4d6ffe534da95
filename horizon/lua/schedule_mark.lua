-- Move a schedule's marker (the last time considered) forward: ARGV[3] name, ARGV[4] unix time,
-- ARGV[5] '1' for a stored (API) schedule: then only while it is still stored (a delete that came
-- after the master read the schedules must not bring its marker back, for ever).
-- Never moves it back, whatever order the masters call in. Returns the marker ('' when gone).
if ARGV[5] == '1' and redis.call('HEXISTS', K.schedules(), ARGV[3]) == 0 then return '' end
local key = K.schedule_fired(ARGV[3])
local cur = tonumber(redis.call('GET', key) or '0')
if tonumber(ARGV[4]) > cur then redis.call('SET', key, ARGV[4]) return ARGV[4] end
return tostring(cur)
