"""Tests for horizon.config: loading, validation, environments and ${VAR} expansion (no Redis)."""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from horizon.config import (
    ConfigError,
    QueueSettings,
    RateLimitSettings,
    Settings,
    SupervisorSettings,
    default_settings,
    load_config,
    settings_from_dict,
)

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def resolve(obj: Any, dotted: str) -> Any:
    """`supervisors[0].queue`, `waits.redis:default`, `queues.emails.rate_limit.jobs`."""
    for token in dotted.split("."):
        match = re.fullmatch(r"([^\[]+)((?:\[\d+\])*)", token)
        assert match, token
        name, indexes = match.groups()
        obj = obj[name] if isinstance(obj, Mapping) else getattr(obj, name)
        for index in re.findall(r"\[(\d+)\]", indexes):
            obj = obj[int(index)]
    return obj


# ------------------------------------------------------------------------------------------
# Good files

SPEC_EXAMPLE = """
prefix: horizon
redis:
  url: null
  embedded: {dir: var/redis, port: 0}
web:
  bind: 127.0.0.1:8080
  path: /horizon
  auth: {token: "${HORIZON_TOKEN}"}
  read_only: false
imports: [jobs]
job_types: {http: {enabled: true}, cli: {enabled: false}}
waits: {"redis:default": 60}
trim: {recent: 60, pending: 60, completed: 60, recent_failed: 10080, failed: 10080, monitored: 10080}
metrics: {snapshot_interval: 300, trim_snapshots: {job: 24, queue: 24}}
silenced: []
memory_limit: 64
defaults:
  supervisor-1: {queue: [default], balance: auto, auto_scaling_strategy: time, min_processes: 1,
                 max_processes: 3, balance_max_shift: 1, balance_cooldown: 3, tries: 1,
                 timeout: 60, memory: 128}
environments:
  production: {supervisor-1: {max_processes: 10}}
  local: {supervisor-1: {max_processes: 3}}
queues:
  emails: {rate_limit: {jobs: 10, per: 1}}
schedule:
  - {name: nightly-report, job: jobs.report, cron: "0 0 3 * * *", args: [], kwargs: {},
     queue: default, timezone: UTC}
"""

GOOD_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "empty-file-is-defaults",
        "",
        "production",
        {
            "prefix": "horizon",
            "redis.url": None,
            "redis.embedded.port": 0,
            "web.bind": "127.0.0.1:8080",
            "web.path": "/horizon",
            "web.auth.token": "",
            "job_types.http.enabled": True,
            "job_types.cli.enabled": False,
            "waits": {"redis:default": 60},
            "trim.failed": 10080,
            "metrics.trim_snapshots.queue": 24,
            "supervisors": (SupervisorSettings(name="supervisor-1"),),
            "schedule": (),
            "queues": {},
        },
    ),
    (
        "spec-example-production",
        SPEC_EXAMPLE,
        "production",
        {
            "environment": "production",
            "imports": ("jobs",),
            "supervisors[0].max_processes": 10,
            "supervisors[0].queue": ("default",),
            "queues.emails": QueueSettings(rate_limit=RateLimitSettings(jobs=10, per=1.0)),
            "schedule[0].cron": "0 0 3 * * *",
            "schedule[0].queue": "default",
            "schedule[0].kwargs": {},
        },
    ),
    ("spec-example-local", SPEC_EXAMPLE, "local", {"supervisors[0].max_processes": 3}),
    (
        "balance-yaml-false",
        "defaults: {s: {balance: false}}",
        "production",
        {"supervisors[0].balance": "false", "supervisors[0].name": "s"},
    ),
    ("balance-string-false", "defaults: {s: {balance: 'false'}}", "x", {"supervisors[0].balance": "false"}),
    ("balance-simple", "defaults: {s: {balance: simple}}", "x", {"supervisors[0].balance": "simple"}),
    ("queue-single-string", "defaults: {s: {queue: solo}}", "x", {"supervisors[0].queue": ("solo",)}),
    ("queue-comma-string", "defaults: {s: {queue: 'a, b'}}", "x", {"supervisors[0].queue": ("a", "b")}),
    ("backoff-number", "defaults: {s: {backoff: 5}}", "x", {"supervisors[0].backoff": (5.0,)}),
    ("backoff-list", "defaults: {s: {backoff: [1, 2.5]}}", "x", {"supervisors[0].backoff": (1.0, 2.5)}),
    ("min-processes-zero", "defaults: {s: {min_processes: 0}}", "x", {"supervisors[0].min_processes": 0}),
    (
        "waits-keys-get-connection",
        "waits: {default: 30, 'redis:emails': 0}",
        "x",
        {"waits": {"redis:default": 30.0, "redis:emails": 0.0}},
    ),
    ("web-path-trailing-slash", "web: {path: /admin/horizon/}", "x", {"web.path": "/admin/horizon"}),
    ("web-bind-ipv6", "web: {bind: '[::1]:9000'}", "x", {"web.bind": "[::1]:9000"}),
    ("web-auth-disabled", "web: {auth: {disabled: true}}", "x", {"web.auth.disabled": True}),
    ("redis-url", "redis: {url: 'redis://h:6379/1'}", "x", {"redis.url": "redis://h:6379/1"}),
    ("redis-embedded-absolute", "redis: {embedded: {dir: /srv/r}}", "x", {"redis.embedded.dir": "/srv/r"}),
    (
        "cli-jobs-enabled",
        "job_types: {cli: {enabled: true}}",
        "x",
        {"job_types.cli.enabled": True, "job_types.http.enabled": True},
    ),
    ("queue-null-settings", "queues: {emails: null}", "x", {"queues.emails.rate_limit": None}),
    (
        "scalars",
        "memory_limit: 256\nfast_termination: true\nreservation_margin: 2.5\n"
        "events_max: 50\nidempotency_ttl: 60\nsilenced: [jobs.ping]\nprefix: 'app:horizon'",
        "x",
        {
            "memory_limit": 256,
            "fast_termination": True,
            "reservation_margin": 2.5,
            "events_max": 50,
            "idempotency_ttl": 60,
            "silenced": ("jobs.ping",),
            "prefix": "app:horizon",
        },
    ),
    (
        "env-merge-order",
        """
        defaults:
          a: {queue: [qa], max_processes: 2}
          b: {queue: [qb]}
        environments:
          production:
            c: {queue: [qc]}
            a: {max_processes: 7, tries: 3}
        """,
        "production",
        {
            "supervisors[0].name": "a",
            "supervisors[0].queue": ("qa",),
            "supervisors[0].max_processes": 7,
            "supervisors[0].tries": 3,
            "supervisors[1].name": "b",
            "supervisors[2].name": "c",
            "supervisors[2].queue": ("qc",),
        },
    ),
    (
        "env-min-above-default-max-fixed-by-env",
        "defaults: {s: {min_processes: 5}}\nenvironments: {production: {s: {max_processes: 9}}}",
        "production",
        {"supervisors[0].min_processes": 5, "supervisors[0].max_processes": 9},
    ),
    (
        "env-without-own-supervisors",
        "defaults: {s: {max_processes: 2}}\nenvironments: {production: null, local: {}}",
        "local",
        {"supervisors[0].max_processes": 2},
    ),
    (
        "no-environments-any-env",
        "defaults: {s: {}}",
        "staging",
        {"environment": "staging", "supervisors[0].name": "s"},
    ),
    (
        "schedule-every-and-cron5",
        """
        schedule:
          - {name: tick, job: jobs.tick, every: 30, args: [1, "x"], kwargs: {a: [1]}}
          - {name: daily, job: jobs.daily, cron: "0 3 * * *", timezone: Europe/Paris, missed: run_once}
        """,
        "x",
        {
            "schedule[0].every": 30.0,
            "schedule[0].cron": None,
            "schedule[0].args": (1, "x"),
            "schedule[0].kwargs": {"a": [1]},
            "schedule[1].cron": "0 3 * * *",
            "schedule[1].timezone": "Europe/Paris",
            "schedule[1].missed": "run_once",
            "schedule[1].tries": None,
            "schedule[1].timeout": None,
            "schedule[1].backoff": None,
        },
    ),
    (
        "schedule-run-options",
        """
        schedule:
          - {name: nightly, job: jobs.n, cron: "0 3 * * *", tries: 3, timeout: 600, backoff: [10, 60.5]}
          - {name: often, job: jobs.o, every: 5, backoff: 2, tries: null}
        """,
        "x",
        {
            "schedule[0].tries": 3,
            "schedule[0].timeout": 600.0,
            "schedule[0].backoff": (10.0, 60.5),
            "schedule[1].tries": None,
            "schedule[1].timeout": None,
            "schedule[1].backoff": (2.0,),
        },
    ),
    (
        "yaml-merge-keys-are-not-duplicates",
        "defaults:\n  a: &base {queue: [q], tries: 2}\n  b: {<<: *base, tries: 5}",
        "x",
        {"supervisors[1].tries": 5, "supervisors[1].queue": ("q",)},
    ),
]


@pytest.mark.parametrize(("text", "env", "expected"), [c[1:] for c in GOOD_CASES], ids=[c[0] for c in GOOD_CASES])
def test_good_files(tmp_path: Path, text: str, env: str, expected: dict[str, Any]) -> None:
    path = write(tmp_path, text)
    settings = load_config(path, env=env, environ={})
    assert settings.path == str(path)
    assert settings.base_dir == str(tmp_path)
    for dotted, value in expected.items():
        assert resolve(settings, dotted) == value, dotted


def test_relative_embedded_dir_resolves_to_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "redis: {embedded: {dir: data/redis}}", name="sub.yaml")
    settings = load_config(path, environ={})
    assert settings.redis.embedded.dir == str(tmp_path / "data" / "redis")


# ------------------------------------------------------------------------------------------
# Invalid files: (id, yaml, env, exact key path, message fragment)

BAD_CASES: list[tuple[str, str, str, str, str]] = [
    (
        "env-max-processes-not-int",
        "defaults: {supervisor-1: {}}\nenvironments: {production: {supervisor-1: {max_processes: ten}}}",
        "production",
        "environments.production.supervisor-1.max_processes",
        "expected an integer >= 1, got 'ten'",
    ),
    (
        "queue-empty-list",
        "defaults: {supervisor-1: {queue: []}}",
        "production",
        "defaults.supervisor-1.queue",
        "non-empty list of queue names",
    ),
    (
        "queue-empty-name",
        "defaults: {supervisor-1: {queue: [a, '']}}",
        "production",
        "defaults.supervisor-1.queue[1]",
        "queue name",
    ),
    (
        "queue-not-string",
        "defaults: {supervisor-1: {queue: [1]}}",
        "production",
        "defaults.supervisor-1.queue[0]",
        "queue name",
    ),
    ("queue-duplicate", "defaults: {s: {queue: [a, a]}}", "production", "defaults.s.queue[1]", "duplicate queue name"),
    (
        "queue-colon",  # queue 'a:delayed' would share keys with queue a's delayed set
        "defaults: {s: {queue: ['a:delayed']}}",
        "production",
        "defaults.s.queue[0]",
        "expected a queue name (1 to 100 characters, none of them whitespace, ',', '/', ':', '{', '}' or a lone "
        "surrogate, and not '.' or '..')",
    ),
    ("queue-dots", "defaults: {s: {queue: ['..']}}", "production", "defaults.s.queue[0]", "and not '.' or '..'"),
    ("queue-slash", "queues: {'a/b': {rate_limit: {jobs: 1, per: 1}}}", "production", "queues.a/b", "queue name"),
    ("queue-too-long", f"defaults: {{s: {{queue: [{'q' * 101}]}}}}", "production", "defaults.s.queue[0]", "queue name"),
    ("trim-zero", "trim: {recent: 0}", "production", "trim.recent", "expected an integer >= 1, got 0"),
    ("trim-unknown", "trim: {forever: 1}", "production", "trim.forever", "unknown key; expected one of: recent"),
    (
        "rate-limit-jobs-zero",
        "queues: {emails: {rate_limit: {jobs: 0, per: 1}}}",
        "production",
        "queues.emails.rate_limit.jobs",
        "expected an integer >= 1",
    ),
    (
        "rate-limit-per-negative",
        "queues: {emails: {rate_limit: {jobs: 1, per: -1}}}",
        "production",
        "queues.emails.rate_limit.per",
        "expected a number > 0",
    ),
    (
        "rate-limit-missing-per",
        "queues: {emails: {rate_limit: {jobs: 1}}}",
        "production",
        "queues.emails.rate_limit.per",
        "required key is missing",
    ),
    ("queue-unknown-key", "queues: {emails: {burst: 3}}", "production", "queues.emails.burst", "unknown key"),
    (
        "cron-field-count",
        "schedule: [{name: a, job: j, cron: '* * *'}]",
        "production",
        "schedule[0].cron",
        "5 fields, or 6",
    ),
    (
        "schedule-neither",
        "schedule: [{name: a, job: j}]",
        "production",
        "schedule[0]",
        "exactly one of 'cron' or 'every'",
    ),
    (
        "schedule-both",
        "schedule: [{name: a, job: j, cron: '* * * * *', every: 5}]",
        "production",
        "schedule[0]",
        "exactly one of 'cron' or 'every'",
    ),
    (
        "schedule-missed",
        "schedule: [{name: a, job: j, every: 5, missed: always}]",
        "production",
        "schedule[0].missed",
        "expected one of: skip, run_once",
    ),
    (
        "schedule-missing-job",
        "schedule: [{name: a, every: 5}]",
        "production",
        "schedule[0].job",
        "required key is missing",
    ),
    (
        "schedule-every-zero",
        "schedule: [{name: a, job: j, every: 0}]",
        "production",
        "schedule[0].every",
        "expected a number of seconds from 1 to 31622400 (366 days), got 0",
    ),
    ("schedule-every-tiny", "schedule: [{name: a, job: j, every: 1.0e-300}]", "production", "schedule[0].every",
     "from 1 to 31622400"),
    ("schedule-every-over-a-year", "schedule: [{name: a, job: j, every: 31622401}]", "production",
     "schedule[0].every", "from 1 to 31622400"),
    ("schedule-every-huge-int", f"schedule: [{{name: a, job: j, every: {10**400}}}]", "production",
     "schedule[0].every", "from 1 to 31622400"),
    ("schedule-every-inf", "schedule: [{name: a, job: j, every: .inf}]", "production", "schedule[0].every",
     "from 1 to 31622400"),
    ("number-huge-int", f"defaults: {{s: {{timeout: {10**400}}}}}", "production", "defaults.s.timeout",
     "expected a number > 0"),
    ("backoff-huge-int", f"defaults: {{s: {{backoff: [1, {10**400}]}}}}", "production", "defaults.s.backoff[1]",
     "expected a number >= 0"),
    ("integer-huge", f"trim: {{recent: {10**30}}}", "production", "trim.recent",
     "expected an integer >= 1 (at most 9223372036854775807)"),
    ("integer-beyond-digit-limit", f"trim: {{recent: {'9' * 5000}}}", "production", "",
     "invalid YAML at line 1, column 16: integer with too many digits"),
    *[
        (f"schedule-{case}", f"schedule: [{{name: a, job: j, every: 5}}, {{name: b, job: j, every: 5, {entry}}}]",
         "production", f"schedule[1].{entry.split(':')[0]}", fragment)
        for case, entry, fragment in (  # the messages of the dispatch options (horizon.jobs.check_limits)
            ("tries-zero", "tries: 0", "tries must be an integer from 1 to 1000, got 0"),
            ("tries-over", "tries: 1001", "tries must be an integer from 1 to 1000, got 1001"),
            ("tries-fraction", "tries: 2.5", "tries must be an integer from 1 to 1000, got 2.5"),
            ("tries-bool", "tries: true", "tries must be an integer from 1 to 1000, got True"),
            ("timeout-zero", "timeout: 0", "timeout must be from 0.001 to 86400 seconds, got 0"),
            ("timeout-over-a-day", "timeout: 86401", "timeout must be from 0.001 to 86400 seconds, got 86401"),
            ("timeout-text", "timeout: soon", "timeout must be a number of seconds, got 'soon'"),
            ("backoff-empty", "backoff: []", "backoff must be a number or a list of 1 to 100 numbers"),
            ("backoff-negative", "backoff: [1, -1]", "backoff must be from 0 to 604800 seconds, got -1"),
            ("backoff-over-a-week", "backoff: 604801", "backoff must be from 0 to 604800 seconds, got 604801"),
            ("backoff-mapping", "backoff: {a: 1}", "backoff must be a number of seconds, got {'a': 1}"),
            ("tries-env-unset", "tries: '${T}'", "tries must be an integer from 1 to 1000, got ''"),
            ("timeout-env-not-a-number", "timeout: '${T:-soon}'", "timeout must be a number of seconds, got 'soon'"),
        )
    ],
    # a supervisor's defaults are its jobs' options: the same ranges (a timeout over a day passed, and
    # the stop deadlines, which assume at most a day, cut such a job short)
    ("supervisor-tries-over", "defaults: {s: {tries: 5000}}", "production", "defaults.s.tries",
     "tries must be an integer from 1 to 1000, got 5000"),
    ("supervisor-timeout-over-a-day", "defaults: {s: {timeout: 100000}}", "production", "defaults.s.timeout",
     "timeout must be from 0.001 to 86400 seconds, got 100000"),
    ("supervisor-timeout-tiny", "defaults: {s: {timeout: 0.0005}}", "production", "defaults.s.timeout",
     "timeout must be from 0.001 to 86400 seconds, got 0.0005"),
    ("supervisor-backoff-over-a-week", "defaults: {s: {backoff: [1, 700000]}}", "production", "defaults.s.backoff",
     "backoff must be from 0 to 604800 seconds, got 700000"),
    ("schedule-name-slash", "schedule: [{name: a/b, job: j, every: 5}]", "production", "schedule[0].name",
     "expected a schedule name (1 to 200 characters, none of them '/', a control character or a lone surrogate)"),
    ("schedule-name-newline", 'schedule: [{name: "a\\nb", job: j, every: 5}]', "production", "schedule[0].name",
     "schedule name"),
    ("schedule-name-control", 'schedule: [{name: "a\\x07b", job: j, every: 5}]', "production", "schedule[0].name",
     "schedule name"),
    ("schedule-name-too-long", f"schedule: [{{name: {'n' * 201}, job: j, every: 5}}]", "production",
     "schedule[0].name", "1 to 200 characters"),
    ("schedule-name-blank", "schedule: [{name: ' ', job: j, every: 5}]", "production", "schedule[0].name",
     "schedule name"),
    ("cron-never", "schedule: [{name: a, job: j, cron: '0 0 30 2 *'}]", "production", "schedule[0].cron",
     "matching some date"),
    (
        "schedule-duplicate-name",
        "schedule: [{name: a, job: j, every: 5}, {name: a, job: k, every: 5}]",
        "production",
        "schedule[1].name",
        "duplicate schedule name",
    ),
    (
        "schedule-timezone",
        "schedule: [{name: a, job: j, every: 5, timezone: Mars/Olympus}]",
        "production",
        "schedule[0].timezone",
        "IANA time zone",
    ),
    ("schedule-not-list", "schedule: nightly", "production", "schedule", "expected a list"),
    (
        "schedule-args-not-json",
        "schedule: [{name: a, job: j, every: 5, args: [2024-01-01]}]",
        "production",
        "schedule[0].args[0]",
        "JSON-compatible",
    ),
    (
        "schedule-unknown-key",
        "schedule: [{name: a, job: j, every: 5, when: now}]",
        "production",
        "schedule[0].when",
        "unknown key",
    ),
    (
        "unknown-top-level",
        "prefixx: horizon",
        "production",
        "prefixx",
        "unknown key; expected one of: prefix, redis, web",
    ),
    (
        "unknown-supervisor-key",
        "defaults: {supervisor-1: {max_proc: 3}}",
        "production",
        "defaults.supervisor-1.max_proc",
        "unknown key; expected one of: connection, queue",
    ),
    (
        "unknown-env-supervisor-key",
        "environments: {production: {supervisor-1: {foo: 1}}}",
        "production",
        "environments.production.supervisor-1.foo",
        "unknown key",
    ),
    (
        "balance-bad",
        "defaults: {s: {balance: round-robin}}",
        "production",
        "defaults.s.balance",
        "expected one of: auto, simple, false",
    ),
    (
        "strategy-bad",
        "defaults: {s: {auto_scaling_strategy: memory}}",
        "production",
        "defaults.s.auto_scaling_strategy",
        "expected one of: time, size",
    ),
    (
        "min-processes-negative",
        "defaults: {s: {min_processes: -1}}",
        "production",
        "defaults.s.min_processes",
        "expected an integer >= 0",
    ),
    (
        "max-below-min",
        "defaults: {s: {min_processes: 5, max_processes: 2}}",
        "production",
        "defaults.s.max_processes",
        "expected an integer >= min_processes (5), got 2",
    ),
    (
        "max-below-min-from-env",
        "defaults: {s: {min_processes: 5, max_processes: 9}}\nenvironments: {production: {s: {max_processes: 2}}}",
        "production",
        "environments.production.s.max_processes",
        "min_processes",
    ),
    (
        "max-default-below-env-min",
        "environments: {production: {s: {min_processes: 5}}}",
        "production",
        "environments.production.s.max_processes",
        "min_processes (5), got 3",
    ),
    (
        "other-env-is-checked-too",
        "environments: {production: {}, local: {s: {tries: 0}}}",
        "production",
        "environments.local.s.tries",
        "expected an integer >= 1",
    ),
    ("timeout-zero", "defaults: {s: {timeout: 0}}", "production", "defaults.s.timeout", "expected a number > 0"),
    ("tries-zero", "defaults: {s: {tries: 0}}", "production", "defaults.s.tries", "expected an integer >= 1"),
    (
        "backoff-negative",
        "defaults: {s: {backoff: [1, -2]}}",
        "production",
        "defaults.s.backoff[1]",
        "expected a number >= 0",
    ),
    (
        "backoff-string",
        "defaults: {s: {backoff: soon}}",
        "production",
        "defaults.s.backoff",
        "expected a number >= 0 or a non-empty list",
    ),
    ("nice-range", "defaults: {s: {nice: 40}}", "production", "defaults.s.nice", "between -20 and 19"),
    ("force-not-bool", "defaults: {s: {force: 'yes'}}", "production", "defaults.s.force", "expected a boolean"),
    (
        "max-processes-bool",
        "defaults: {s: {max_processes: true}}",
        "production",
        "defaults.s.max_processes",
        "expected an integer",
    ),
    (
        "supervisor-not-mapping",
        "defaults: {supervisor-1: [1]}",
        "production",
        "defaults.supervisor-1",
        "expected a mapping",
    ),
    ("supervisor-name-space", "defaults: {'my sup': {}}", "production", "defaults.my sup", "supervisor name"),
    (
        "undefined-environment",
        "environments: {production: {}, local: {}}",
        "staging",
        "environments",
        "environment 'staging' is not defined; expected one of: production, local",
    ),
    ("bind-no-port", "web: {bind: localhost}", "production", "web.bind", '"host:port"'),
    ("bind-port-range", "web: {bind: 'h:70000'}", "production", "web.bind", "between 1 and 65535"),
    ("web-path-relative", "web: {path: horizon}", "production", "web.path", "starting with '/'"),
    ("web-read-only-string", "web: {read_only: 'yes'}", "production", "web.read_only", "expected a boolean"),
    ("web-workers-zero", "web: {workers: 0}", "production", "web.workers", "expected an integer >= 1"),
    ("web-unknown", "web: {port: 80}", "production", "web.port", "unknown key; expected one of: bind"),
    ("web-token-int", "web: {auth: {token: 1234}}", "production", "web.auth.token", "expected a string"),
    ("prefix-empty", "prefix: ''", "production", "prefix", "non-empty string"),
    ("prefix-space", "prefix: 'a b'", "production", "prefix", "without whitespace"),
    ("prefix-braces", "prefix: '{x}'", "production", "prefix", "'{', '}'"),
    # before: passed, then every command failed with a UnicodeEncodeError traceback
    ("prefix-surrogate", 'prefix: "a\\udc80"', "production", "prefix", "or a lone surrogate"),
    # before: passed (a start --check too), then the master could not connect (exit 1), or used db 0
    ("redis-url-port", "redis: {url: 'redis://127.0.0.1:273022/0'}", "production", "redis.url",
     "its port is not a number from 0 to 65535"),
    ("redis-url-db", "redis: {url: 'redis://127.0.0.1/x3'}", "production", "redis.url",
     "its database must be a number, got 'x3'"),
    ("redis-url-query-db", "redis: {url: 'unix:///run/redis.sock?db=three'}", "production", "redis.url",
     "its database must be a number, got 'three'"),
    ("redis-url-no-host", "redis: {url: 'redis://'}", "production", "redis.url", "it names no host"),
    # the password is masked in the message (before: printed as written)
    ("redis-url-masked", "redis: {url: 'redis://:Top Secret@127.0.0.1/0'}", "production", "redis.url",
     "got 'redis://***@127.0.0.1/0'"),
    ("redis-url-masked-port", "redis: {url: 'redis://:Top:Sec/ret@127.0.0.1:6379/0'}", "production", "redis.url",
     "got 'redis://***@127.0.0.1:6379/0'"),
    ("fast-termination-int", "fast_termination: 1", "production", "fast_termination", "expected a boolean"),
    ("memory-limit-bool", "memory_limit: true", "production", "memory_limit", "expected an integer"),
    (
        "reservation-margin-string",
        "reservation_margin: lots",
        "production",
        "reservation_margin",
        "expected a number >= 0",
    ),
    ("imports-item-int", "imports: [1]", "production", "imports[0]", "module name"),
    ("imports-bad-name", "imports: [my-jobs.py]", "production", "imports[0]", "module name"),
    ("imports-mapping", "imports: {a: 1}", "production", "imports", "list of module names"),
    ("silenced-item", "silenced: [1]", "production", "silenced[0]", "job name"),
    ("redis-url-scheme", "redis: {url: 'http://x'}", "production", "redis.url", "redis://, rediss://"),
    (
        "redis-port-range",
        "redis: {embedded: {port: 70000}}",
        "production",
        "redis.embedded.port",
        "between 0 and 65535",
    ),
    ("redis-unknown", "redis: {host: x}", "production", "redis.host", "unknown key; expected one of: url, embedded"),
    ("waits-negative", "waits: {'redis:default': -1}", "production", "waits.redis:default", "expected a number >= 0"),
    (
        "metrics-trim-snapshots",
        "metrics: {trim_snapshots: {job: 0}}",
        "production",
        "metrics.trim_snapshots.job",
        "expected an integer >= 1",
    ),
    (
        "job-types-string-bool",
        "job_types: {cli: {enabled: 'true'}}",
        "production",
        "job_types.cli.enabled",
        "expected a boolean",
    ),
    (
        "job-types-unknown",
        "job_types: {ftp: {enabled: true}}",
        "production",
        "job_types.ftp",
        "unknown key; expected one of: http, cli",
    ),
    ("section-not-mapping", "trim: 5", "production", "trim", "expected a mapping, got 5"),
    ("malformed-reference", "prefix: '${FOO'", "production", "prefix", "malformed ${...} reference"),
    ("top-level-list", "- a\n- b", "production", "", "expected a mapping at the top level"),
]


@pytest.mark.parametrize(
    ("text", "env", "key_path", "fragment"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_files(tmp_path: Path, text: str, env: str, key_path: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env, environ={})
    err = info.value
    message = str(err)
    assert err.file == str(path)
    assert err.path == key_path
    assert message.startswith(f"{path}: {key_path}: " if key_path else f"{path}: ")
    assert fragment in err.message
    assert "\n" not in message


def test_error_line_is_exactly_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path,
        """
        defaults:
          supervisor-1: {queue: [default]}
        environments:
          production:
            supervisor-1: {max_processes: ten}
        """,
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("config.yaml", environ={})
    assert str(info.value) == (
        "config.yaml: environments.production.supervisor-1.max_processes: expected an integer >= 1, got 'ten'"
    )
    assert info.value.path == "environments.production.supervisor-1.max_processes"
    assert info.value.message == "expected an integer >= 1, got 'ten'"


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "trim: {recnt: 5}"), environ={})
    assert info.value.message == (
        "unknown key; expected one of: recent, pending, completed, recent_failed, failed, monitored"
    )


# ------------------------------------------------------------------------------------------
# File-level errors


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("prefix: horizon\nweb:\n  bind: [unclosed\n", "line 4"),
        ("prefix: horizon\nweb: {bind: a\n  path: b: c}\n", "line 3"),
        ("prefix: a\nredis: {}\nprefix: b\n", "line 3"),
        ("a: 1\n\tb: 2\n", "line 2"),
    ],
    ids=["unclosed-flow", "bad-mapping", "duplicate-key", "tab"],
)
def test_yaml_syntax_error_has_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.path == ""
    assert str(info.value).startswith(f"{path}: invalid YAML at {fragment}")
    assert "\n" not in str(info.value)


def test_duplicate_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate key 'prefix'"):
        load_config(write(tmp_path, "prefix: a\nprefix: b\n"), environ={})


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, environ={})
    assert str(info.value) == f"{missing}: file not found"
    assert info.value.file == str(missing)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ={})


# ------------------------------------------------------------------------------------------
# ${VAR} expansion

EXPANSION_CASES: list[tuple[str, str, dict[str, str], str, Any]] = [
    ("set", "web: {auth: {token: '${TOK}'}}", {"TOK": "s3cret"}, "web.auth.token", "s3cret"),
    ("unset-is-empty", "web: {auth: {token: '${TOK}'}}", {}, "web.auth.token", ""),
    ("unquoted", "web:\n  auth:\n    token: ${TOK}\n", {"TOK": "abc"}, "web.auth.token", "abc"),
    ("default-unset", "prefix: '${P:-fallback}'", {}, "prefix", "fallback"),
    ("default-empty", "prefix: '${P:-fallback}'", {"P": ""}, "prefix", "fallback"),
    ("default-set", "prefix: '${P:-fallback}'", {"P": "mine"}, "prefix", "mine"),
    ("dash-default-only-when-unset", "web: {auth: {token: '${T-x}'}}", {"T": ""}, "web.auth.token", ""),
    ("inside-text", "prefix: 'app-${ENV}-h'", {"ENV": "prod"}, "prefix", "app-prod-h"),
    ("escaped", "web: {auth: {token: '$${LITERAL}'}}", {"LITERAL": "no"}, "web.auth.token", "${LITERAL}"),
    ("dollars-untouched", "web: {auth: {token: 'pa$$word'}}", {}, "web.auth.token", "pa$$word"),
    ("int-field", "defaults: {s: {max_processes: '${MAXP}'}}", {"MAXP": "12"}, "supervisors[0].max_processes", 12),
    ("int-field-default", "defaults: {s: {max_processes: '${MAXP:-7}'}}", {}, "supervisors[0].max_processes", 7),
    (
        "number-field",
        "defaults: {s: {balance_cooldown: '${CD}'}}",
        {"CD": "2.5"},
        "supervisors[0].balance_cooldown",
        2.5,
    ),
    ("bool-field", "web: {read_only: '${RO}'}", {"RO": "true"}, "web.read_only", True),
    ("bool-field-false", "fast_termination: '${FT:-false}'", {}, "fast_termination", False),
    ("backoff-field", "defaults: {s: {backoff: '${B}'}}", {"B": "4"}, "supervisors[0].backoff", (4.0,)),
    ("list-items", "defaults: {s: {queue: ['${Q1}', b]}}", {"Q1": "a"}, "supervisors[0].queue", ("a", "b")),
    ("redis-url-unset-is-null", "redis: {url: '${REDIS_URL}'}", {}, "redis.url", None),
    ("redis-url-set", "redis: {url: '${REDIS_URL}'}", {"REDIS_URL": "redis://r:1/0"}, "redis.url", "redis://r:1/0"),
    ("bind", "web: {bind: '${BIND:-0.0.0.0:9000}'}", {}, "web.bind", "0.0.0.0:9000"),
    ("schedule-tries", "schedule: [{name: a, job: j, every: 5, tries: '${T}'}]", {"T": "4"}, "schedule[0].tries", 4),
    ("schedule-timeout", "schedule: [{name: a, job: j, every: 5, timeout: '${T:-90}'}]", {}, "schedule[0].timeout",
     90.0),
    ("schedule-backoff", "schedule: [{name: a, job: j, every: 5, backoff: ['${B}', 30]}]", {"B": "2.5"},
     "schedule[0].backoff", (2.5, 30.0)),
    (
        "schedule-args-plain-str",
        "schedule: [{name: a, job: j, every: 5, args: ['${X}']}]",
        {"X": "7"},
        "schedule[0].args",
        ("7",),
    ),
]


@pytest.mark.parametrize(
    ("text", "environ", "dotted", "expected"),
    [c[1:] for c in EXPANSION_CASES],
    ids=[c[0] for c in EXPANSION_CASES],
)
def test_env_expansion(tmp_path: Path, text: str, environ: dict[str, str], dotted: str, expected: Any) -> None:
    settings = load_config(write(tmp_path, text), environ=environ)
    value = resolve(settings, dotted)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(value, tuple):
        assert all(type(v) is type(e) for v, e in zip(value, expected, strict=True))


@pytest.mark.parametrize(
    ("text", "environ", "key_path"),
    [
        ("defaults: {s: {max_processes: '${MAXP}'}}", {"MAXP": "lots"}, "defaults.s.max_processes"),
        ("defaults: {s: {max_processes: '${MAXP}'}}", {}, "defaults.s.max_processes"),
        ("defaults: {s: {max_processes: '1${MAXP}'}}", {"MAXP": "2"}, "defaults.s.max_processes"),
        ("web: {read_only: '${RO}'}", {"RO": "maybe"}, "web.read_only"),
    ],
    ids=["not-a-number", "unset", "partial-reference-not-coerced", "not-a-bool"],
)
def test_env_expansion_still_validates(tmp_path: Path, text: str, environ: dict[str, str], key_path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=environ)
    assert info.value.path == key_path


# ------------------------------------------------------------------------------------------
# Lookup of the file, the environment and the Redis URL


def test_horizon_config_lookup(tmp_path: Path) -> None:
    path = write(tmp_path, "prefix: from-env-var", name="custom.yaml")
    settings = load_config(environ={"HORIZON_CONFIG": str(path)})
    assert settings.prefix == "from-env-var"
    assert settings.path == str(path)


def test_cwd_config_yaml_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "prefix: from-cwd")
    monkeypatch.chdir(tmp_path)
    settings = load_config(environ={})
    assert settings.prefix == "from-cwd"
    assert settings.path == str(tmp_path / "config.yaml")


def test_no_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_config(environ={})
    assert settings.path is None
    assert settings.base_dir == str(tmp_path)
    assert settings.prefix == "horizon"
    assert settings.supervisors == (SupervisorSettings(name="supervisor-1"),)


def test_horizon_env_selects_environment(tmp_path: Path) -> None:
    path = write(tmp_path, SPEC_EXAMPLE)
    assert load_config(path, environ={"HORIZON_ENV": "local"}).supervisors[0].max_processes == 3
    assert load_config(path, environ={"HORIZON_ENV": ""}).environment == "production"
    # An explicit env wins over HORIZON_ENV.
    explicit = load_config(path, env="production", environ={"HORIZON_ENV": "local"})
    assert explicit.supervisors[0].max_processes == 10


@pytest.mark.parametrize(
    ("file_url", "environ", "expected"),
    [
        ("null", {"HORIZON_REDIS_URL": "redis://ext:6379/2"}, "redis://ext:6379/2"),
        ("'redis://file:1/0'", {"HORIZON_REDIS_URL": "rediss://ext:6380/0"}, "rediss://ext:6380/0"),
        ("'redis://file:1/0'", {"HORIZON_REDIS_URL": ""}, "redis://file:1/0"),
        ("'redis://file:1/0'", {}, "redis://file:1/0"),
    ],
    ids=["over-null", "over-file", "empty-ignored", "unset"],
)
def test_horizon_redis_url_override(tmp_path: Path, file_url: str, environ: dict[str, str], expected: str) -> None:
    settings = load_config(write(tmp_path, f"redis: {{url: {file_url}}}"), environ=environ)
    assert settings.redis.url == expected


def test_horizon_redis_url_override_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_config(environ={"HORIZON_REDIS_URL": "redis://x:1/0"})
    assert settings.redis.url == "redis://x:1/0"


def test_horizon_redis_url_override_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""), environ={"HORIZON_REDIS_URL": "localhost:6379"})
    assert info.value.path == "HORIZON_REDIS_URL"


# ------------------------------------------------------------------------------------------
# The shipped config.yaml and the Python API


@pytest.mark.parametrize(("env", "max_processes"), [("production", 6), ("local", 3)])
def test_repository_config_yaml_loads(env: str, max_processes: int) -> None:
    settings = load_config(REPO / "config.yaml", env=env, environ={})
    assert settings.prefix == "horizon"
    assert settings.redis.url is None
    assert settings.redis.embedded.dir == str(REPO / "var" / "redis")
    assert settings.web.bind == "127.0.0.1:8080"
    assert settings.web.path == "/horizon"
    assert settings.web.auth.token == ""
    assert settings.imports == ("demo_jobs",)
    assert settings.waits == {"redis:default": 60}
    sup = settings.supervisor("supervisor-1")
    assert sup.queue == ("default", "emails")
    assert sup.balance == "auto"
    assert sup.max_processes == max_processes
    assert settings.queues["emails"].rate_limit == RateLimitSettings(jobs=10, per=1)
    assert settings.schedule == ()


def test_repository_config_yaml_token_from_environment() -> None:
    settings = load_config(REPO / "config.yaml", environ={"HORIZON_TOKEN": "t0k"})
    assert settings.web.auth.token == "t0k"


def test_settings_from_dict_and_source_in_errors(tmp_path: Path) -> None:
    settings = settings_from_dict(
        {"prefix": "p", "defaults": {"w": {"queue": ("a", "b")}}}, base_dir=str(tmp_path), environ={}
    )
    assert settings.path is None
    assert settings.base_dir == str(tmp_path)
    assert settings.supervisors[0].queue == ("a", "b")
    assert settings.redis.embedded.dir == os.path.join(str(tmp_path), "var", "redis")
    with pytest.raises(ConfigError) as info:
        settings_from_dict({"trim": {"recent": "x"}}, source="inline")
    assert str(info.value) == "inline: trim.recent: expected an integer >= 1, got 'x'"
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        settings_from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_default_settings_and_overrides() -> None:
    settings = default_settings(prefix="other", events_max=5)
    assert isinstance(settings, Settings)
    assert (settings.prefix, settings.events_max, settings.environment) == ("other", 5, "production")
    assert settings.idempotency_ttl == 86400
    assert settings.reservation_margin == 10
    assert settings.with_overrides(prefix="again").prefix == "again"
    assert settings.prefix == "other"
    assert settings.supervisor("supervisor-1").max_processes == 3
    with pytest.raises(KeyError):
        settings.supervisor("missing")
    with pytest.raises(AttributeError):
        settings.prefix = "x"  # type: ignore[misc]


def test_config_error_forms() -> None:
    err = ConfigError("f.yaml", "a.b", "expected x, got 1")
    assert (str(err), err.file, err.path, err.message) == (
        "f.yaml: a.b: expected x, got 1",
        "f.yaml",
        "a.b",
        "expected x, got 1",
    )
    assert str(ConfigError("f.yaml", "", "file not found")) == "f.yaml: file not found"
    assert str(ConfigError("just a message")) == "just a message"


def test_hard_timeout_grace_ends_before_the_reservation_deadline():
    """A job that ignores its timeout is stopped 5 s later, or sooner when the reservation margin
    is short: its worker is gone before the job's reservation deadline (timeout + margin)."""
    assert settings_from_dict({}).timeout_grace == 5.0
    assert settings_from_dict({"reservation_margin": 0.5}).timeout_grace == 0.25
    assert 0 < settings_from_dict({"reservation_margin": 0}).timeout_grace <= 0.01
