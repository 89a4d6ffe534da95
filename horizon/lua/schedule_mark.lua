-- Move a schedule's marker (the last time considered) forward: ARGV[3] name, ARGV[4] unix time.
-- Never moves it back, whatever order the masters call in. Returns the marker.
local key = K.schedule_fired(ARGV[3])
local cur = tonumber(redis.call('GET', key) or '0')
if tonumber(ARGV[4]) > cur then redis.call('SET', key, ARGV[4]) return ARGV[4] end
return tostring(cur)
