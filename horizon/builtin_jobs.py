"""Built-in job types usable from any language: ``horizon.http`` and ``horizon.cli``.

The job's kwargs are the type's spec (``POST jobs`` with ``{"type": "http", "http": {...}}``
becomes ``horizon.http`` with those kwargs). Success is a 2xx answer / exit code 0; the
returned dict (status or exit code plus bounded excerpts) is kept as the job's ``output``.
Any other outcome raises, so the job is retried or failed like any other; a spec that can
never run raises :class:`InvalidSpec` (a ``FailForGood``: failed at once, without retries).

http: redirects are followed to http:// and https:// URLs only, at most MAX_REDIRECTS times;
``timeout`` is a deadline for the whole request (resolving the host name, connecting, sending,
reading the answer's headers and kept body), redirects included; only the first EXCERPT bytes of the body are read.

cli: the command runs without a shell, with an empty stdin, in a session (process group) of
its own. Only the last EXCERPT bytes of stdout and stderr are kept in memory. The job ends when
the command exits, and whatever it left running in its process group is then killed (SIGKILL);
on the job's timeout, or any other exception, the group gets SIGTERM, then SIGKILL after
KILL_AFTER seconds. Processes that leave the group (``setsid``) are not tracked. When the worker
itself is killed outright (SIGKILL, the OOM killer), its supervisor stops the group the same way
(``supervisor.leftovers``); a worker without a supervisor (``horizon work``) cannot, and the kernel
then sends SIGTERM to the command alone (its parent-death signal).
"""

from __future__ import annotations

import functools
import io
import json as jsonlib
import logging
import math
import os
import re
import selectors
import signal
import socket
import string
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from http import client as http_client
from typing import Any

from horizon import lineage
from horizon.jobs import FailForGood, job
from horizon.payload import encodes

log = logging.getLogger(__name__)

EXCERPT = 4096  # bytes of a response body or of stdout/stderr kept in the output
ERROR_EXCERPT = 512  # bytes of a failed response's body quoted in the error message
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110)
_URL_REFUSED = re.compile(r"[\x00-\x20\x7f]")  # what http.client refuses in a URL
MAX_REDIRECTS = 10  # redirects an http job follows (http:// and https:// only)
CHUNK = 65536  # bytes read from a cli job's pipe at a time
POLL = 0.1  # s between checks that a cli job's command has exited while its pipes are quiet
DRAIN = 0.5  # s to read what is left in the pipes once the command has exited
KILL_AFTER = 1.0  # s between SIGTERM and SIGKILL to a cli job's process group when it is stopped


class HttpJobError(RuntimeError):
    """The request failed or answered with a status outside 2xx."""


class CliJobError(RuntimeError):
    """The command could not start or exited with a non-zero code."""


class InvalidSpec(FailForGood, ValueError):
    """The spec can never run (a malformed URL or header, a NUL in an argument...): the job
    fails at once, without retries. The message names the field."""


class CliDisabled(FailForGood, PermissionError):
    """cli jobs are off unless ``job_types.cli.enabled`` is true (never retried)."""


class HttpDisabled(FailForGood, PermissionError):
    """http jobs are off when ``job_types.http.enabled`` is false (never retried)."""


def _excerpt(data: bytes, size: int = EXCERPT) -> str:
    text = data[:size].decode("utf-8", errors="replace")
    return text + ("…" if len(data) > size else "")


def _tail(data: bytes) -> str:
    text = data[-EXCERPT:].decode("utf-8", errors="replace")
    return ("…" if len(data) > EXCERPT else "") + text


def _mapping(value: Any, field: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{field} must be an object, got {type(value).__name__}")
    return value


def _url(url: Any) -> urllib.parse.SplitResult:
    """The URL's parts, when http.client can request it."""
    if not isinstance(url, str) or not url.isascii() or _URL_REFUSED.search(url):
        raise InvalidSpec(f"http.url must be an ASCII string without spaces or control characters, got {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError when out of range or not a number)
    except ValueError as exc:
        raise InvalidSpec(f"http.url {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSpec(f"http.url must be an absolute http:// or https:// URL with a host, got {url!r}")
    return parts


def _headers(headers: Any) -> dict[str, str]:
    checked = {}
    for name, value in _mapping(headers, "http.headers").items():
        name, value = str(name), str(value)
        if not _TOKEN.fullmatch(name):
            raise InvalidSpec(f"http.headers: {name!r} is not a valid header name")
        if any(c in value for c in "\r\n\0") or not encodes(value, "latin-1"):
            raise InvalidSpec(f"http.headers[{name!r}]: the value must be Latin-1 without CR, LF or NUL, got {value!r}")
        checked[name] = value
    return checked


def _timeout(timeout: Any) -> float:
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise InvalidSpec(f"http.timeout must be a number of seconds above 0, got {timeout!r}")
    return seconds


def _request(
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    query: Mapping[str, Any] | None,
    json: Any,
    form: Mapping[str, Any] | None,
    body: str | None,
) -> urllib.request.Request:
    """The request the spec describes; InvalidSpec (never retried) when it can never be made."""
    method = str(method).upper()
    if method not in HTTP_METHODS:
        raise InvalidSpec(f"http.method must be one of {', '.join(HTTP_METHODS)}, got {method!r}")
    parts = _url(url)
    if sum(x is not None for x in (json, form, body)) > 1:
        raise InvalidSpec("http: give at most one of json, form or body")
    if query:
        extra = urllib.parse.urlencode(dict(_mapping(query, "http.query")), doseq=True)
        url = urllib.parse.urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
    hdrs = {"User-Agent": "horizon-http-job", **_headers(headers)}
    data, content_type = None, None
    if json is not None:
        data, content_type = jsonlib.dumps(json).encode(), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(dict(_mapping(form, "http.form")), doseq=True).encode()
        content_type = "application/x-www-form-urlencoded"
    elif body is not None:
        data = str(body).encode()
    if content_type and not any(name.lower() == "content-type" for name in hdrs):
        hdrs["Content-Type"] = content_type
    return urllib.request.Request(url, data=data, headers=hdrs, method=method)


CREDENTIAL_HEADERS = ("Authorization", "Proxy-authorization", "Cookie")  # as urllib stores the names


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects, to http:// and https:// URLs only (urllib's own
    follows ftp:// too), without reading the redirecting answer's body. A redirect to another
    origin (scheme, host or port) drops the Authorization and Cookie headers (urllib forwards
    them), as requests and browsers do."""

    def http_error_302(self, req, fp, code, msg, headers):  # type: ignore[no-untyped-def]
        location = headers.get("location") or headers.get("uri")
        if not location:
            return None  # an error like any other non-2xx answer
        # as urllib does: headers are decoded as ISO-8859-1; percent-encode non-ASCII bytes and spaces
        location = urllib.parse.quote(location, encoding="iso-8859-1", safe=string.punctuation)
        target = urllib.parse.urljoin(req.full_url, location)
        scheme = urllib.parse.urlsplit(target).scheme
        hops = getattr(req, "hops", 0)
        where = f"{req.get_method()} {req.full_url} answered {code} redirecting to {target}"
        if scheme not in ("http", "https"):
            fp.close()
            raise HttpJobError(f"{where}: refused, only http:// and https:// redirects are followed, not {scheme}://")
        if hops >= MAX_REDIRECTS:
            fp.close()
            raise HttpJobError(f"{where}: refused, more than {MAX_REDIRECTS} redirects")
        new = self.redirect_request(req, fp, code, msg, headers, target)  # HTTPError if not to be followed
        if _origin(target) != _origin(req.full_url):  # credentials are for the site they were given for
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name)
        new.hops = hops + 1  # type: ignore[attr-defined]
        fp.close()
        log.debug("%s", where)
        return self.parent.open(new, timeout=req.timeout)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline reached")
    return left


class _DeadlineReader(io.RawIOBase):
    """A response's socket reader whose every read may take only what is left until the deadline."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: float) -> None:
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(_left(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http_client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, deadline))


def resolve(host: str, port: int, deadline: float, lookup: Any = socket.getaddrinfo) -> list[Any]:
    """``lookup(host, port, 0, SOCK_STREAM)`` (getaddrinfo) by the deadline. The resolver has no
    timeout of its own to give it, so it runs in a daemon thread that is left to finish alone
    when the deadline comes first (the resolver's own timeouts end it)."""
    found: dict[str, Any] = {}

    def run() -> None:
        try:
            found["infos"] = lookup(host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            found["error"] = exc

    thread = threading.Thread(target=run, name="horizon-http-resolve", daemon=True)
    thread.start()
    thread.join(_left(deadline))
    if thread.is_alive():
        raise TimeoutError(f"resolving {host!r} did not finish by the request's deadline (http.timeout)")
    if "error" in found:
        raise found["error"]
    return found["infos"]


def _connect(address: tuple[str, int], deadline: float, source_address: Any = None) -> socket.socket:
    """socket.create_connection with the name resolution bounded by the deadline too."""
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"{host!r} resolved to no address")


class _DeadlineConnection(http_client.HTTPConnection):
    """Resolves, connects, sends and reads the answer (status line, headers, body) by the deadline."""

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.response_class = functools.partial(_DeadlineResponse, deadline=deadline)  # type: ignore[assignment]
        self._create_connection = lambda address, timeout, source=None: _connect(address, deadline, source)

    def connect(self) -> None:
        self.timeout = _left(self.deadline)
        super().connect()


class _DeadlineHTTPSConnection(_DeadlineConnection, http_client.HTTPSConnection):
    pass


class _DeadlineHandler(urllib.request.HTTPSHandler):
    """Opens http:// and https:// URLs with the connections above."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def do_open(self, http_class, req, **kwargs):  # type: ignore[no-untyped-def]
        deadline_class = _DeadlineHTTPSConnection if http_class is http_client.HTTPSConnection else _DeadlineConnection
        return super().do_open(functools.partial(deadline_class, deadline=self.deadline), req, **kwargs)

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(http_client.HTTPConnection, req)

    http_request = urllib.request.AbstractHTTPHandler.do_request_


def _opener(deadline: float) -> urllib.request.OpenerDirector:
    """urllib's default opener for http:// and https:// only (no ftp:, file: or data: handler)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _DeadlineHandler(deadline),
        urllib.request.HTTPDefaultErrorHandler(),
        _Redirects(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


@job(name="horizon.http")
def http(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, Any] | None = None,
    json: Any = None,
    form: Mapping[str, Any] | None = None,
    body: str | None = None,
    timeout: float = 30,
) -> dict[str, Any]:
    """Make one HTTP request; 2xx is success: {"status", "body" (first 4 KiB)}.

    ``timeout`` is a deadline for the whole request: connecting, sending, and reading the answer
    (its headers and the part of its body kept), redirects included."""
    if not _enabled("http"):  # a job pushed by name or straight to Redis passes no API check
        raise HttpDisabled("http jobs are disabled on this host: job_types.http.enabled is false in the config")
    request = _request(method, url, headers, query, json, form, body)
    timeout = _timeout(timeout)
    deadline = time.monotonic() + timeout
    what = f"{request.method} {request.full_url}"
    try:
        try:
            with _opener(deadline).open(request) as response:
                status, data = response.status, response.read(EXCERPT + 1)
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read(EXCERPT + 1) if exc.fp else b""
            finally:
                exc.close()
            raise HttpJobError(f"{what} answered {exc.code}: {_excerpt(data, ERROR_EXCERPT)}") from None
    except (urllib.error.URLError, OSError, http_client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):  # every socket wait is bounded by what is left
            raise HttpJobError(f"{what} failed: http.timeout of {timeout:g} s exceeded") from None
        raise HttpJobError(f"{what} failed: {reason}") from None
    if not 200 <= status < 300:
        raise HttpJobError(f"{what} answered {status}: {_excerpt(data, ERROR_EXCERPT)}")
    return {"status": status, "body": _excerpt(data)}


def _enabled(kind: str) -> bool:
    from horizon.context import current

    return bool(getattr(current().settings.job_types, kind).enabled)


def _cli_enabled() -> bool:
    return _enabled("cli")


def check_spec(kind: str, spec: Mapping[str, Any]) -> None:
    """InvalidSpec naming the field when an ``http`` or ``cli`` spec (the job's kwargs) could never
    run on any host: what the API checks before it pushes the job. (Whether ``cli.cwd`` exists is
    up to the worker's host.)"""
    if kind == "http":
        _request(spec.get("method", "GET"), spec.get("url"), spec.get("headers"), spec.get("query"),
                 spec.get("json"), spec.get("form"), spec.get("body"))
        if "timeout" in spec:
            _timeout(spec["timeout"])
    else:
        _command(spec.get("argv"), spec.get("env"), None)
        cwd = spec.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or "\0" in cwd):
            raise InvalidSpec(f"cli.cwd must be a directory path, got {cwd!r}")


def _command(argv: Any, env: Any, cwd: Any) -> tuple[list[str], dict[str, str]]:
    """The command's argv and environment (the worker's, updated by ``env``); InvalidSpec (never
    retried) when the spec can never run."""
    if isinstance(argv, str) or not isinstance(argv, Sequence) or not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidSpec("cli.argv must be a non-empty list of strings")
    if any("\0" in a for a in argv):
        raise InvalidSpec("cli.argv: an argument contains a NUL character")
    environ = dict(os.environ)
    for key, value in _mapping(env, "cli.env").items():
        key, value = str(key), str(value)
        if not key or "=" in key or "\0" in key:
            raise InvalidSpec(f"cli.env: {key!r} is not a valid variable name (empty, or with '=' or NUL)")
        if "\0" in value:
            raise InvalidSpec(f"cli.env[{key!r}]: the value contains a NUL character")
        environ[key] = value
    if cwd is not None and (not isinstance(cwd, str) or "\0" in cwd or not os.path.isdir(cwd)):
        raise InvalidSpec(f"cli.cwd must be an existing directory on the worker's host, got {cwd!r}")
    return list(argv), environ


def _exited(pid: int) -> bool:
    """The command has exited; it stays unreaped (a zombie), so its pid and group id stay its own."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _read(fd: int, tails: dict[int, bytearray], selector: selectors.BaseSelector) -> None:
    """Read what is ready on one pipe, keeping only its last EXCERPT + 1 bytes."""
    chunk = os.read(fd, CHUNK)
    if not chunk:
        selector.unregister(fd)
        return
    tail = tails[fd]
    tail += chunk
    del tail[: -(EXCERPT + 1)]


def _communicate(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Read both pipes until the command exits (not until EOF: a background process may hold
    them), kill what it left in its process group, drain the pipes briefly and reap it."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    tails = {out: bytearray(), err: bytearray()}
    with selectors.DefaultSelector() as selector:
        for fd in tails:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() and not _exited(proc.pid):
            for key, _ in selector.select(POLL):
                _read(key.fd, tails, selector)
        if not selector.get_map():  # both pipes closed, the command still runs
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        _signal_group(proc.pid, signal.SIGKILL)  # background processes it left behind
        drained = time.monotonic() + DRAIN
        while selector.get_map() and (left := drained - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                _read(key.fd, tails, selector)
    proc.wait()
    return bytes(tails[out]), bytes(tails[err])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the command's whole process group: SIGTERM, up to KILL_AFTER s for the command to
    exit, then SIGKILL; and reap it. The worker's signals (the job's hard timeout, a stop) wait
    until this is done, so no process is left behind."""
    if proc.returncode is not None:  # reaped by _communicate, its group killed
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM, signal.SIGINT})
    try:
        log.info("stopping the process group of %s (pid %d)", proc.args[0], proc.pid)
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_AFTER
        while not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited with {code}"
    try:
        return f"killed by signal {-code} ({signal.Signals(-code).name})"
    except ValueError:
        return f"killed by signal {-code}"


@job(name="horizon.cli")
def cli(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> dict[str, Any]:
    """Run a command (no shell); exit 0 is success: {"exit_code", "stdout", "stderr"} (last 4 KiB).

    The command runs in a process group of its own, with an empty stdin. On the job's timeout
    (or any other exception) the whole group is stopped (:func:`_stop`); when the command exits,
    whatever it left running in its group is killed. If the worker dies outright meanwhile, its
    supervisor stops the group (:func:`horizon.lineage.running_group`); without one, the command
    alone gets SIGTERM from the kernel."""
    if not _cli_enabled():
        raise CliDisabled("cli jobs are disabled on this host: set job_types.cli.enabled: true in the config")
    argv, environ = _command(argv, env, cwd)
    try:
        proc = subprocess.Popen(
            argv,
            env=environ,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            # if this worker dies outright, the command gets SIGTERM (this thread waits for it
            # to exit, so the signal never comes earlier); its group is its supervisor's to stop
            preexec_fn=lineage.death_signal_hook(signal.SIGTERM),
        )
    except OSError as exc:
        raise CliJobError(f"cannot run {argv[0]!r}: {exc}") from None
    with lineage.running_group(proc.pid), proc:  # proc's exit closes the pipes (and reaps it)
        try:
            stdout, stderr = _communicate(proc)
        except BaseException:  # the job's timeout, a stop of the worker, an error here
            _stop(proc)
            raise
    code = proc.returncode
    output = {"exit_code": code, "stdout": _tail(stdout), "stderr": _tail(stderr)}
    if code != 0:
        raise CliJobError(f"{argv[0]} {_describe_exit(code)}: {output['stderr'] or output['stdout']}")
    return output
