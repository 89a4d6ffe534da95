-- Record a long-wait alert as a 'queue:long_wait' event, at most once per interval per queue.
-- ARGV[3] "connection:queue", ARGV[4] wait seconds, ARGV[5] threshold seconds, ARGV[6] interval.
-- Returns 1 when recorded, 0 when an alert for that queue was recorded within the interval.
local name = ARGV[3]
if not redis.call('SET', K.wait_alert(name), NOW_TEXT, 'NX', 'EX', tonumber(ARGV[6])) then return 0 end
local queue = string.match(name, '^[^:]*:(.*)$') or name
queue_event('queue:long_wait', queue, {connection_queue = name, wait = tonumber(ARGV[4]),
  threshold = tonumber(ARGV[5])})
return 1
