"""The dashboard in a real headless browser (Playwright driving Debian's chromium).

One Flask app per module served by werkzeug on 127.0.0.1 (a thread), against the test Redis,
with real jobs processed by a real worker process. Skips without /usr/bin/chromium unless
HORIZON_REQUIRE_BROWSER=1 (CI), where a missing browser fails. Screenshots of every page go
under a temp dir (printed; HORIZON_SCREENSHOTS=<dir> to choose it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token"
XSS_ARG = "<script>window.__xss = 'script'</script>"
XSS_KWARG = "<img src=x onerror=\"window.__xss = 'img'\">"


def _browser_or_skip():
    required = os.environ.get("HORIZON_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - depends on the machine
        if required:
            pytest.fail(f"HORIZON_REQUIRE_BROWSER=1 but playwright is not installed: {exc}")
        pytest.skip("playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        if required:
            pytest.fail(f"HORIZON_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    return sync_playwright


@dataclass
class World:
    """Everything the tests share: the prefix, config file, env for child processes, the job ids."""

    prefix: str
    config: Path
    env: dict
    settings: object
    ids: dict = field(default_factory=dict)
    shots: Path | None = None

    def horizon(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "horizon.cli", *args, "--config", str(self.config)],
            env=self.env, cwd=str(ROOT), capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result


    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "horizon.cli", *args, "--config", str(self.config)],
            env=self.env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )


class Server:
    """A Flask app served by werkzeug in a thread on a free loopback port."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

        self.httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def api(self, path: str, token: str = "") -> object:
        request = urllib.request.Request(self.url + "/horizon/api/" + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def playwright_factory():
    return _browser_or_skip()


@pytest.fixture(scope="module")
def world(redis_server, tmp_path_factory, playwright_factory) -> Iterator[World]:
    from horizon.config import settings_from_dict
    from horizon.context import configure, reset
    from tests import sample_jobs

    prefix = "dash" + uuid.uuid4().hex[:8]
    data = {
        "prefix": prefix,
        "redis": {"url": redis_server.url},
        "imports": ["tests.sample_jobs"],
        "defaults": {"supervisor-1": {"queue": ["default"], "max_processes": 2, "timeout": 30}},
    }
    folder = tmp_path_factory.mktemp("dashboard")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HORIZON_TEST_REDIS"] = redis_server.url
    env.pop("HORIZON_CONFIG", None)
    env.pop("HORIZON_REDIS_URL", None)
    old_env = os.environ.get("HORIZON_TEST_REDIS")
    os.environ["HORIZON_TEST_REDIS"] = redis_server.url
    settings = settings_from_dict(data, base_dir=str(ROOT))
    hz = configure(settings)
    shots = Path(os.environ.get("HORIZON_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    w = World(prefix=prefix, config=config, env=env, settings=settings, shots=shots)

    w.ids["added"] = [sample_jobs.add.dispatch(f"{prefix}:sum", i, 1) for i in range(3)]
    w.ids["failed"] = [sample_jobs.fail.options(tags=["billing"]).dispatch(f"{prefix}:fail-{i}") for i in range(2)]
    w.ids["xss"] = sample_jobs.record.options(tags=["xss"]).dispatch(XSS_ARG, value=XSS_KWARG)
    w.ids["progress"] = sample_jobs.report_progress.dispatch(f"{prefix}:progress")
    w.horizon("work", "--stop-when-empty")
    w.horizon("snapshot")
    w.ids["pending"] = sample_jobs.noop.options(queue="later").dispatch()
    print(f"\nscreenshots: {shots}")
    yield w
    keys = list(hz.redis.scan_iter(match=f"{{{prefix}}}:*", count=1000))
    if keys:
        hz.redis.delete(*keys)
    hz.redis.delete(f"{prefix}:sum", f"{prefix}:progress", *[f"{prefix}:fail-{i}" for i in range(2)], XSS_ARG)
    hz.close()
    reset()
    if old_env is None:
        os.environ.pop("HORIZON_TEST_REDIS", None)
    else:
        os.environ["HORIZON_TEST_REDIS"] = old_env


def _serve(world: World, **web) -> Server:
    from horizon.context import Horizon
    from web import create_app

    settings = world.settings
    if web:
        settings = settings.with_overrides(web=dataclasses.replace(settings.web, **web))
    app = create_app(settings, Horizon(settings))
    app.config["HORIZON_SSE_HEARTBEAT"] = 0.5  # event streams notice a closed browser quickly
    return Server(app)


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[Server]:
    srv = _serve(world)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(playwright_factory) -> Iterator[object]:
    pw = playwright_factory().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    pw.stop()


class Page:
    """A browser page that records console errors, page errors and CSP violations."""

    def __init__(self, browser, base: str, **context_options) -> None:
        self.context = browser.new_context(**context_options)
        self.page = self.context.new_page()
        self.base = base
        self.problems: list[str] = []
        self.expected: list[str] = []  # console errors a test causes on purpose (substrings)
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.page.on("dialog", lambda dialog: (self.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))

    def _console(self, msg) -> None:
        if msg.type == "error" and not any(e in msg.text for e in self.expected):
            self.problems.append(f"console: {msg.text}")

    def goto(self, path: str) -> object:
        self.page.goto(self.base + path, wait_until="domcontentloaded")
        return self.page

    def ready(self, rel: str) -> None:
        """Wait until the client rendered the page at `rel` (relative to /horizon) after its data loaded."""
        self.page.wait_for_function("r => document.body.dataset.ready === r", arg=rel, timeout=10000)

    def shot(self, world: World, name: str) -> None:
        self.page.screenshot(path=str(world.shots / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser, server) -> Iterator[Page]:
    p = Page(browser, server.url, viewport={"width": 1280, "height": 900})
    yield p
    p.close()
    assert p.problems == []


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_dashboard_figures_match_the_api(page: Page, server: Server, world: World) -> None:
    with page.page.expect_response(lambda r: r.url.endswith("/horizon/api/stats")) as answer:
        pg = page.goto("/horizon")
    page.ready("/")
    stats = answer.value.json()  # what the page was given (jobsPerMinute decays from second to second)
    for key in ("recentJobs", "failedJobs", "processes", "jobsPerMinute"):
        shown = float(_text(pg, f"[data-stat={key}] .card-value").replace(",", ""))
        assert shown == pytest.approx(stats[key], abs=0.051), key
    again = server.api("stats")
    assert (again["recentJobs"], again["failedJobs"], again["processes"]) == (
        stats["recentJobs"], stats["failedJobs"], stats["processes"])
    assert stats["failedJobs"] == 2 and stats["recentJobs"] >= 6
    assert _text(pg, "[data-stat=status] .card-value") == stats["status"]
    workload = server.api("workload")
    shown = pg.locator("[data-queue]").evaluate_all("rows => rows.map(r => r.dataset.queue)")
    assert shown == [q["name"] for q in workload] and "default" in shown
    later = pg.locator("[data-queue=later] td").all_inner_texts()
    assert later[2].strip() == str(next(q["length"] for q in workload if q["name"] == "later"))
    page.shot(world, "dashboard-no-master")
    # a real master supervisor: its supervisors and processes per queue appear
    master = world.popen("start")
    try:
        def with_processes() -> dict:
            masters = server.api("masters")
            ok = masters and all(s.get("processes") and any(s["processes"].values())
                                 for m in masters.values() for s in m["supervisors"] or [{}])
            return masters if ok else {}

        name, record = next(iter(wait_for(with_processes, timeout=20, interval=0.2).items()))
        page.goto("/horizon")
        page.ready("/")
        supervisor = record["supervisors"][0]
        panel = pg.locator(f"[data-master='{name}']")
        assert supervisor["name"] in panel.inner_text()
        for queue, count in supervisor["processes"].items():
            assert f"{queue}: {count}" in panel.locator(".proc-list").first.inner_text()
        assert _text(pg, "[data-stat=status] .card-value") == server.api("stats")["status"] == "running"
        pg.locator(f"[data-master='{name}'] details.workers summary").first.click()
        page.shot(world, "dashboard")
    finally:
        master.terminate()
        master.wait(timeout=30)


def test_every_page_renders_and_is_screenshotted(page: Page, world: World, server: Server) -> None:
    pg = page.page
    names = server.api("metrics/jobs")
    assert "tests.add" in names
    pages = [
        ("monitoring", "/monitoring"), ("metrics-jobs", "/metrics/jobs"),
        ("metrics-job", "/metrics/jobs/tests.add"), ("metrics-queues", "/metrics/queues/default"),
        ("jobs-recent", "/jobs/recent"), ("jobs-pending", "/jobs/pending"),
        ("jobs-completed", "/jobs/completed"), ("jobs-silenced", "/jobs/silenced"),
        ("jobs-failed", "/jobs/failed"), ("job-detail", f"/jobs/{world.ids['added'][0]}"),
        ("failed-detail", f"/failed/{world.ids['failed'][0]}"), ("queues", "/queues"),
    ]
    for name, rel in pages:
        page.goto("/horizon" + rel)
        page.ready(rel)
        page.shot(world, name)
    # the metrics page draws its charts with the vendored Chart.js
    page.goto("/horizon/metrics/jobs/tests.add")
    page.ready("/metrics/jobs/tests.add")
    assert pg.evaluate("typeof window.Chart") == "function"
    assert pg.locator("[data-chart=throughput] canvas").evaluate("c => c.width > 0 && !!window.Chart.getChart(c)")
    from horizon.context import current
    from horizon.repositories.metrics import MetricsRepository

    expected = MetricsRepository(current()).percentiles("job", "tests.add")
    for key in ("p50", "p95", "p99"):
        shown = _text(pg, f"[data-stat={key}] .card-value")
        assert float(shown.removesuffix(" ms").replace(",", "")) == pytest.approx(expected[key], abs=0.01), key
    progress = server.api(f"jobs/{world.ids['progress']}")["progress"]
    page.goto(f"/horizon/jobs/{world.ids['progress']}")
    page.ready(f"/jobs/{world.ids['progress']}")
    assert _text(pg, "[data-field=progress]") == f"{progress * 100:g} %" == "50 %"
    assert pg.locator("[data-field=progress] progress").get_attribute("value") == "50"
    recent = server.api("jobs/recent")
    page.goto("/horizon/jobs/recent")
    page.ready("/jobs/recent")
    assert pg.locator("tr[data-job-id]").count() == len(recent["jobs"])


def test_phone_width_and_dark_mode(browser, server: Server, world: World) -> None:
    p = Page(browser, server.url, viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    try:
        failed = f"/failed/{world.ids['failed'][0]}"
        pages = [("dashboard", "/"), ("jobs-failed", "/jobs/failed"), ("job-detail", failed)]
        for name, rel in pages:
            p.goto("/horizon" + rel)
            p.ready(rel)
            p.shot(world, f"phone-dark-{name}")
            overflow = p.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{rel} is wider than the phone screen by {overflow}px"
        background = p.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(18, 20, 26)"
        assert p.problems == []
    finally:
        p.close()


def test_failed_job_opened_and_retried_by_clicking(page: Page, server: Server, world: World) -> None:
    pg = page.goto("/horizon/jobs/failed")
    page.ready("/jobs/failed")
    job_id = world.ids["failed"][1]
    pg.locator(f"tr[data-job-id='{job_id}'] a.job-link").click()
    page.ready(f"/failed/{job_id}")
    assert pg.url.endswith(f"/horizon/failed/{job_id}")
    section = pg.locator("[data-section=exception]")
    assert "ValueError" in section.inner_text()
    assert f"boom: {world.prefix}:fail-1" in section.inner_text()
    assert "Traceback" in section.locator("pre").inner_text()
    assert f"{world.prefix}:fail-1" in pg.locator("[data-section=payload] pre").first.inner_text()
    pg.locator("button[data-action=retry]").click()
    retried = wait_for(lambda: server.api(f"jobs/failed/{job_id}").get("retried_by"), timeout=10)
    copy = retried[0]["id"]
    pg.locator(f"[data-section=retries] a:has-text('{copy}')").wait_for(timeout=10000)
    assert server.api(f"jobs/{copy}")["retry_of"] == job_id
    page.shot(world, "failed-detail-retried")


def test_retry_all_failed_jobs(page: Page, server: Server) -> None:
    pg = page.goto("/horizon/jobs/failed")
    page.ready("/jobs/failed")
    failed = server.api("jobs/failed")["jobs"]
    assert any(not job["retried_by"] for job in failed)
    pg.locator("button[data-action=retry-all]").click()
    wait_for(lambda: all(job["retried_by"] for job in server.api("jobs/failed")["jobs"]), timeout=10)
    wait_for(lambda: pg.locator("tr[data-job-id] .actions .muted").count() == len(failed), timeout=10)


def test_retry_all_with_a_tag_retries_every_page(page: Page, server: Server, world: World) -> None:
    """Before, "Retry all" with a tag filter retried only the 50 jobs of the page shown."""
    from tests import sample_jobs

    tag, key = "every-page", f"{world.prefix}:retry-all"
    ids = [sample_jobs.fail.options(queue=tag, tags=[tag], tries=1).dispatch(key) for _ in range(60)]
    world.horizon("work", "--queue", tag, "--stop-when-empty")  # its own queue: the world's jobs stay as they are
    assert server.api(f"jobs/failed?tag={tag}")["total"] == 60
    pg = page.goto(f"/horizon/jobs/failed?tag={tag}")
    page.ready("/jobs/failed")
    assert pg.locator("tr[data-job-id]").count() == 50
    pg.locator("button[data-action=retry-all]").click()
    wait_for(lambda: all(server.api(f"jobs/failed/{job_id}")["retried_by"] for job_id in ids), timeout=30)
    pg.locator(f"text=Retried 60 failed jobs tagged “{tag}”").wait_for(timeout=10000)
    # the world's lists as they were for the next tests: the copies (pending) and the originals go
    from horizon.context import current
    from horizon.repositories.queues import QueueRepository

    queues = QueueRepository(current())
    assert queues.drain(tag) == 60
    assert all(queues.delete(job_id) for job_id in ids)
    sample_jobs._r().delete(key)


def test_failed_jobs_search_by_tag(page: Page, world: World) -> None:
    pg = page.goto("/horizon/jobs/failed")
    page.ready("/jobs/failed")
    pg.fill("input[name=tag]", "no-such-tag")
    pg.press("input[name=tag]", "Enter")
    pg.locator("p.empty:has-text('no-such-tag')").wait_for(timeout=10000)
    pg.fill("input[name=tag]", "billing")
    pg.press("input[name=tag]", "Enter")
    pg.locator("tr[data-job-id]").first.wait_for(timeout=10000)
    ids = set(pg.locator("tr[data-job-id]").evaluate_all("rows => rows.map(r => r.dataset.jobId)"))
    assert ids == set(world.ids["failed"])
    assert pg.url.endswith("/horizon/jobs/failed?tag=billing")


def test_tag_can_be_monitored(page: Page, server: Server, world: World) -> None:
    from tests import sample_jobs

    tag = "team:ops/blue"
    pg = page.goto("/horizon/monitoring")
    page.ready("/monitoring")
    pg.fill("form[data-form=monitor] input[name=tag]", tag)
    pg.click("form[data-form=monitor] button[type=submit]")
    row = pg.locator("tr[data-tag]", has_text=tag)
    row.wait_for(timeout=10000)
    assert {t["tag"] for t in server.api("monitoring")} >= {tag}
    job_id = sample_jobs.add.options(tags=[tag]).dispatch(f"{world.prefix}:sum", 40, 2)
    world.horizon("work", "--stop-when-empty")
    count = next(t["count"] for t in server.api("monitoring") if t["tag"] == tag)
    assert count >= 1
    # the count follows live (SSE) or by polling, without a reload
    wait_for(lambda: row.locator("td.num").inner_text().strip() == str(count), timeout=20)
    row.locator("a.tag-link").click()
    page.ready("/monitoring/" + "team%3Aops%2Fblue")
    assert pg.locator(f"tr[data-job-id='{job_id}']").count() == 1
    page.shot(world, "monitoring-tag")
    page.goto("/horizon/monitoring")
    page.ready("/monitoring")
    pg.locator("tr[data-tag]", has_text=tag).locator("button[data-action=unmonitor]").click()
    pg.locator("tr[data-tag]", has_text=tag).wait_for(state="detached", timeout=10000)
    assert tag not in {t["tag"] for t in server.api("monitoring")}


def test_script_and_img_in_arguments_render_as_text(page: Page, world: World) -> None:
    pg = page.goto(f"/horizon/jobs/{world.ids['xss']}")
    page.ready(f"/jobs/{world.ids['xss']}")
    payload = pg.locator("[data-section=payload]").inner_text()
    assert XSS_ARG in payload and XSS_KWARG.replace('"', '\\"') in payload
    assert f"key:{XSS_ARG}" in pg.locator("[data-field=tags]").inner_text()
    page.goto("/horizon/jobs/recent")
    page.ready("/jobs/recent")
    assert pg.locator(f"tr[data-job-id='{world.ids['xss']}']").count() == 1
    assert pg.evaluate("window.__xss") is None
    assert pg.locator("main script, main img").count() == 0
    page.goto(f"/horizon/jobs/{world.ids['xss']}")
    page.ready(f"/jobs/{world.ids['xss']}")
    page.shot(world, "job-detail-xss")
    assert pg.evaluate("window.__xss") is None


def test_queue_pause_resume_and_drain(page: Page, server: Server) -> None:
    from tests import sample_jobs

    for _ in range(2):
        sample_jobs.noop.options(queue="scratch").dispatch()
    pg = page.goto("/horizon/queues")
    page.ready("/queues")
    row = pg.locator("tr[data-queue=scratch]")
    row.locator("button[data-action=pause]").click()
    pg.locator("tr[data-queue=scratch][data-paused=true]").wait_for(timeout=10000)
    assert server.api("queues/scratch")["paused"] is True
    row.locator("button[data-action=resume]").click()
    pg.locator("tr[data-queue=scratch][data-paused=false]").wait_for(timeout=10000)
    assert server.api("queues/scratch")["paused"] is False
    drain = row.locator("button[data-action=drain]")
    drain.click()
    assert drain.inner_text() == "Confirm drain" and server.api("queues/scratch")["pending"] == 2
    drain.click()
    wait_for(lambda: server.api("queues/scratch")["pending"] == 0, timeout=10)
    wait_for(lambda: row.locator("td").nth(2).inner_text().strip() == "0", timeout=10)


def test_live_banner_counts_new_jobs_instead_of_jumping(page: Page, world: World) -> None:
    from tests import sample_jobs

    pg = page.goto("/horizon/jobs/pending")
    page.ready("/jobs/pending")
    pg.locator("#live[data-state=live]").wait_for(timeout=10000)
    before = pg.locator("tr[data-job-id]").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert world.ids["pending"] in before
    assert not pg.locator("button.banner").is_visible()
    new = [sample_jobs.noop.options(queue="later").dispatch() for _ in range(2)]
    banner = pg.locator("button.banner:has-text('2 new jobs')")
    banner.wait_for(state="visible", timeout=10000)
    assert pg.locator("tr[data-job-id]").evaluate_all("rows => rows.map(r => r.dataset.jobId)") == before
    banner.click()
    pg.locator(f"tr[data-job-id='{new[-1]}']").wait_for(timeout=10000)
    assert pg.locator("tr[data-job-id]").first.get_attribute("data-job-id") == new[-1]


def test_polling_takes_over_when_the_event_stream_is_down(page: Page) -> None:
    from tests import sample_jobs

    page.expected.append("ERR_FAILED")  # the aborted event stream
    page.page.route("**/horizon/api/events", lambda route: route.abort())
    pg = page.goto("/horizon/jobs/pending")
    page.ready("/jobs/pending")
    pg.locator("#live[data-state=polling]").wait_for(timeout=10000)
    sample_jobs.noop.options(queue="later").dispatch()
    pg.locator("button.banner:has-text('1 new job')").wait_for(state="visible", timeout=10000)


def test_token_prompt_then_bearer_header(browser, world: World) -> None:
    srv = _serve(world, auth=dataclasses.replace(world.settings.web.auth, token=TOKEN))
    p = Page(browser, srv.url, viewport={"width": 1280, "height": 900})
    try:
        pg = p.goto("/horizon/jobs/failed")
        form = pg.locator("form[data-form=token]")
        form.wait_for(timeout=10000)
        p.shot(world, "token-prompt")
        pg.fill("#token-input", "wrong")
        pg.click("form[data-form=token] button[type=submit]")
        pg.locator("form[data-form=token] .form-error:has-text('not accepted')").wait_for(timeout=10000)
        pg.fill("#token-input", TOKEN)
        with pg.expect_request(lambda r: "/horizon/api/jobs/failed" in r.url) as request_info:
            pg.click("form[data-form=token] button[type=submit]")
        assert request_info.value.headers.get("authorization") == f"Bearer {TOKEN}"
        p.ready("/jobs/failed")
        assert pg.locator("tr[data-job-id]").count() == len(srv.api("jobs/failed", TOKEN)["jobs"])
        pg.locator("#live[data-state=live]").wait_for(timeout=10000)  # fetch-streamed SSE with the header
        pg.reload(wait_until="domcontentloaded")
        p.ready("/jobs/failed")  # asked once: kept in sessionStorage
        assert pg.locator("form[data-form=token]").count() == 0
        assert [x for x in p.problems if "401" not in x] == []  # 401: the refused token's request
    finally:
        p.close()
        srv.stop()


def test_read_only_hides_mutating_buttons(browser, world: World) -> None:
    srv = _serve(world, read_only=True)
    p = Page(browser, srv.url, viewport={"width": 1280, "height": 900})
    try:
        for rel in ["/jobs/failed", f"/failed/{world.ids['failed'][0]}", "/queues", "/monitoring"]:
            p.goto("/horizon" + rel)
            p.ready(rel)
            assert p.page.locator("main button[data-action], form[data-form=monitor]").count() == 0, rel
        assert p.problems == []
    finally:
        p.close()
        srv.stop()


def test_paging_uses_starting_at_without_gaps_or_repeats(page: Page, server: Server) -> None:
    from tests import sample_jobs

    sample_jobs.noop.options(queue="paging").dispatch_many([((), {})] * 60)
    first = server.api("jobs/pending")
    pg = page.goto("/horizon/jobs/pending")
    page.ready("/jobs/pending")
    rows = "rows => rows.map(r => r.dataset.jobId)"
    page_one = pg.locator("tr[data-job-id]").evaluate_all(rows)
    assert page_one == [j["id"] for j in first["jobs"]] and len(page_one) == 50
    with pg.expect_request(lambda r: "starting_at=" in r.url) as request_info:
        pg.click("button:has-text('Older')")
    assert f"starting_at={first['jobs'][-1]['index']}" in request_info.value.url
    pg.locator(f"tr[data-job-id='{page_one[-1]}']").wait_for(state="detached", timeout=10000)
    page_two = pg.locator("tr[data-job-id]").evaluate_all(rows)
    assert not set(page_one) & set(page_two)
    assert len(page_one) + len(page_two) == first["total"]
    pg.click("button:has-text('Newer')")
    pg.locator(f"tr[data-job-id='{page_one[0]}']").wait_for(timeout=10000)
