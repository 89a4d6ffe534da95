"""Repositories: read models (and small writes) over Redis, one module per concern.

Each takes a configured :class:`horizon.context.Horizon` and owns the keys of its concern
(built through ``horizon.keys``). The web layer and the CLI only read through these; state
changes of jobs go through the Lua scripts of ``horizon.queue``.

- ``jobs``        JobRepository: paged job lists (recent, pending, completed, silenced, failed), one job
- ``tags``        TagRepository: monitored tags and their jobs
- ``metrics``     MetricsRepository: measured jobs/queues, snapshots, jobs per minute, percentiles
- ``workload``    WorkloadRepository: queue lengths, waits, processes per queue
- ``supervisors`` MasterRepository / SupervisorRepository / CommandQueue: heartbeats and commands
- ``queues``      QueueRepository: queue list/detail and queue control (pause, resume, drain, ...)
- ``events``      EventRepository: the capped event stream (newest id, blocking reads) for SSE
- ``batches``     BatchRepository: batches in Horizon's shape (schedules: ``horizon.schedules``)
"""
