"""The dashboard in a real browser (Debian's Chromium through chromedriver) against a live server
process and the real engine. Each test saves screenshots in its temporary folder."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.harness import NginxServer, ServiceProcess, docker_cli, free_port, service_with_nginx

pytestmark = pytest.mark.docker


@dataclass
class Server:
    process: ServiceProcess
    contexts: Path
    nginx: NginxServer
    upload: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def token(self) -> str:
        return self.process.headers["Authorization"].split(" ", 1)[1]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        return httpx2.request(method, f"{self.url}{path}", headers=self.process.headers, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui-server")
    with service_with_nginx(root) as (process, web, contexts):
        yield Server(process, contexts, web, root / "data" / "upload")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=ChromeService(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        # Every test leaves a picture of where it ended, in its own temporary folder.
        with contextlib.suppress(WebDriverException):
            driver.save_screenshot(str(tmp_path / "at-the-end.png"))
        driver.quit()


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # the page is between two states
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def log_in(browser: WebDriver, server: Server, token: str) -> None:
    browser.get(f"{server.url}/ui/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/login'] button").click()
    wait_for(lambda: browser.current_url.rstrip("/").endswith("/ui"), what="the overview")


def submit(browser: WebDriver, button: WebElement) -> str:
    """Click a form's button; what the next page says: its notice or the reason it was refused.
    (Waits for the page to be replaced first: the previous page may carry a notice too.)"""
    before = browser.find_element(By.TAG_NAME, "html")
    button.click()
    wait_for(lambda: _replaced(before), what="the next page")
    found = wait_for(
        lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".notice, .refused")],
        what="the form's outcome",
    )
    return str(found[0])


def command_form(
    browser: WebDriver, server: Server, container: str, cmd: str, workdir: str = ""
) -> WebElement:
    """The container page's "Run a command" form, filled in: its button."""
    browser.get(f"{server.url}/ui/containers/{container}")
    form = browser.find_element(By.ID, "exec")
    form.find_element(By.NAME, "cmd").send_keys(cmd)
    if workdir:
        form.find_element(By.NAME, "workdir").send_keys(workdir)
    return form.find_element(By.CSS_SELECTOR, "button")


def _replaced(element: WebElement) -> bool:
    try:
        element.tag_name  # noqa: B018 (touching it tells whether it is still on the page)
    except StaleElementReferenceException:
        return True
    return False


def session_cookie(browser: WebDriver) -> str:
    return str(next(c["value"] for c in browser.get_cookies() if c["name"] == "dm_session"))


def make_token(server: Server, *scopes: str) -> tuple[str, str]:
    """A new token's (id, secret)."""
    made = server.api("POST", "/auth/tokens", json={"name": "-".join(scopes) + "-ui", "scopes": list(scopes)})
    assert made.status_code == 201, made.text
    return str(made.json()["id"]), str(made.json()["token"])


def test_overview_shows_the_host_and_the_charts(browser: WebDriver, server: Server, tmp_path: Path) -> None:
    log_in(browser, server, server.token)
    assert "Overview" in browser.title
    # The charts fill from /ui/usage.json (no inline script: the page's CSP forbids it).
    wait_for(
        lambda: int(browser.find_element(By.ID, "charts").get_attribute("data-points") or 0) > 0,
        what="chart data",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#charts .uplot")) == 2
    roots = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table tbody tr td:first-child")]
    assert {"data", "builds", "upload"} <= set(roots)
    browser.save_screenshot(str(tmp_path / "overview.png"))
    browser.set_window_size(390, 844)  # a phone: still usable
    browser.get(f"{server.url}/ui")
    assert browser.find_element(By.CSS_SELECTOR, "header.top nav").is_displayed()
    browser.save_screenshot(str(tmp_path / "overview-390.png"))
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_build_log_arrives_live_and_the_task_can_be_cancelled(
    browser: WebDriver, server: Server, unique: str, base_image: str, tmp_path: Path
) -> None:
    folder = server.contexts / f"{unique}-slow"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo {unique}\nRUN for i in $(seq 1 300); do echo tick-$i; sleep 0.1; done\n"
    )
    log_in(browser, server, server.token)
    started = server.api("POST", "/docker/build/start", json={"context_path": folder.name, "nocache": True})
    task_id = started.json()["task_id"]
    browser.get(f"{server.url}/ui/tasks/{task_id}")
    browser.execute_script("window.__sameDocument = 'yes';")
    log = browser.find_element(By.ID, "log")
    wait_for(lambda: "tick-5" in log.text, what="live log lines")
    first = len(log.find_elements(By.CSS_SELECTOR, ".line"))
    wait_for(lambda: len(log.find_elements(By.CSS_SELECTOR, ".line")) > first + 5, what="more lines")
    assert browser.execute_script("return window.__sameDocument") == "yes"  # no reload: pushed lines
    steps = browser.find_element(By.ID, "steps").text
    assert "building starting" in steps
    browser.save_screenshot(str(tmp_path / "task-live.png"))

    browser.find_element(By.CSS_SELECTOR, f"form[action='/ui/tasks/{task_id}/cancel'] button").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "cancelled" in browser.find_element(By.CSS_SELECTOR, ".notice").text, what="the notice")
    status = server.api("GET", f"/tasks/status/{task_id}").json()
    assert status["status"] == "cancelled"
    wait_for(lambda: browser.find_element(By.ID, "status").text == "cancelled", what="the status badge")
    browser.save_screenshot(str(tmp_path / "task-cancelled.png"))
    # A browser reconnecting sends Last-Event-ID: the stream goes on after that event, and ends.
    resumed = httpx2.get(
        f"{server.url}/ui/tasks/{task_id}/stream",
        cookies={"dm_session": session_cookie(browser)},
        headers={"Last-Event-ID": "3"},
        timeout=30,
    )
    ids = [int(line[4:]) for line in resumed.text.splitlines() if line.startswith("id: ")]
    assert ids and ids[0] == 4 and ids == sorted(ids) and "event: end" in resumed.text
    # The task's files: their last lines on the page, linked from the file list.
    browser.get(f"{server.url}/ui/tasks/{task_id}")
    tail = browser.find_element(By.ID, "file-build.log").get_attribute("textContent") or ""
    assert "tick-5" in tail
    assert browser.find_element(By.CSS_SELECTOR, "a[href='#file-build.log']")


def test_a_read_token_gets_no_actions_and_forged_posts_are_refused(
    browser: WebDriver, server: Server, unique: str, base_image: str
) -> None:
    ran = server.api(
        "POST",
        "/docker/run",
        json={"image": base_image, "name": f"{unique}-box", "command": ["sleep", "60"]},
    )
    assert ran.status_code == 200, ran.text
    log_in(browser, server, make_token(server, "read")[1])
    browser.get(f"{server.url}/ui/containers")
    assert f"{unique}-box" in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, "form[action*='/ui/containers/'] button")
    browser.get(f"{server.url}/ui/containers/{ran.json()['id']}")
    assert "Processes" in browser.page_source and not browser.find_elements(By.ID, "exec")
    browser.get(f"{server.url}/ui/containers")
    assert "Tokens" not in browser.find_element(By.CSS_SELECTOR, "header.top nav").text
    cookie = session_cookie(browser)
    target = f"{server.url}/ui/containers/{ran.json()['id']}/stop"
    # Without the session's CSRF token: refused before anything happens.
    forged = httpx2.post(
        target, cookies={"dm_session": cookie}, data={"csrf": "guess"}, follow_redirects=False
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    # With it, but a read token: refused by the same rule as the API, and the page says why.
    browser.get(f"{server.url}/ui")
    csrf = browser.find_element(By.CSS_SELECTOR, "form[action='/ui/logout'] input[name=csrf]").get_attribute(
        "value"
    )
    refused = httpx2.post(target, cookies={"dm_session": cookie}, data={"csrf": csrf}, follow_redirects=True)
    assert "Refused: insufficient_scope" in refused.text
    assert server.api("GET", f"/docker/containers/{ran.json()['id']}").json()["State"]["Running"] is True
    # The same form sent from another site (a browser says so) or as multipart: refused.
    for extra in ({"headers": {"Sec-Fetch-Site": "cross-site"}}, {"files": {"x": b"1"}}):
        assert (
            httpx2.post(target, cookies={"dm_session": cookie}, data={"csrf": csrf}, **extra).status_code
            == 403
        )
    # A bearer token is not a session: refused, not redirected.
    assert httpx2.post(target, headers=server.process.headers, data={"csrf": csrf}).status_code == 401
    # The audit log has the refusals as what they were, not as the redirects' 303.
    entries = server.api("GET", "/audit", params={"limit": 10}).json()["entries"]
    mine = [e for e in entries if e["route"] == "/ui/containers/{container_id}/{action}"]
    assert [(e["status"], e["error_code"]) for e in mine[:5]] == [
        (401, "unauthorized"),
        (403, "csrf"),
        (403, "csrf"),
        (403, "insufficient_scope"),
        (403, "csrf"),
    ], mine


def test_roll_back_from_the_app_page(
    browser: WebDriver, server: Server, unique: str, base_image: str, tmp_path: Path
) -> None:
    port = free_port()
    for version in (1, 2):
        script = f"mkdir -p /www && echo v{version} > /www/index.html && exec httpd -f -p 80 -h /www"
        if version == 2:
            server.api("POST", "/docker/stop", json={"id_or_name": f"{unique}-v1", "timeout": 1})
        ran = server.api(
            "POST",
            "/docker/run",
            json={
                "image": base_image,
                "name": f"{unique}-v{version}",
                "command": ["sh", "-c", script],
                "ports": {"80/tcp": port},
                "app_id": unique,
            },
        )
        assert ran.status_code == 200, ran.text
    log_in(browser, server, server.token)
    browser.get(f"{server.url}/ui/apps/{unique}")
    browser.find_element(By.CSS_SELECTOR, f"form[action='/ui/apps/{unique}/rollback'] button").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "/ui/tasks/rollback-" in browser.current_url, what="the rollback's task page")
    wait_for(lambda: browser.find_element(By.ID, "status").text == "completed", timeout=60, what="completion")
    browser.save_screenshot(str(tmp_path / "rollback.png"))
    releases = server.api("GET", f"/apps/{unique}/releases").json()
    assert (releases[0]["source"], releases[0]["restored_from"], releases[0]["status"]) == (
        "rollback",
        1,
        "live",
    )
    assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip() == "v1"


def test_a_containers_stats_followed_log_files_and_download(
    browser: WebDriver, server: Server, unique: str, base_image: str
) -> None:
    script = (
        "mkdir -p /srv/site && echo '<b>hello</b> files' > /srv/site/index.html && "
        "i=0; while true; do i=$((i+1)); echo beat-$i; sleep 0.2; done"
    )
    ran = server.api(
        "POST",
        "/docker/run",
        json={"image": base_image, "name": f"{unique}-files", "command": ["sh", "-c", script]},
    )
    container = ran.json()["id"]
    log_in(browser, server, server.token)
    wait_for(
        lambda: server.api(
            "POST", "/docker/exec", json={"id_or_name": container, "cmd": ["ls", "/srv/site"]}
        ).json()["stdout"],
        what="the file",
    )
    browser.get(f"{server.url}/ui/containers/{container}?path=/srv")
    assert "Processes" in browser.find_element(By.ID, "stats").text  # the engine's live stats

    def last_beat() -> int:
        lines = browser.find_element(By.ID, "container-log").text.split()
        return max(int(word.split("-")[1]) for word in lines if word.startswith("beat-"))

    first = last_beat()
    browser.find_element(By.ID, "follow").click()
    wait_for(lambda: last_beat() > first + 10, what="the followed log to move on")

    browser.find_element(By.LINK_TEXT, "site/").click()
    browser.find_element(By.LINK_TEXT, "index.html").click()
    text = browser.find_element(By.CSS_SELECTOR, "pre.filetext").text
    assert text.strip() == "<b>hello</b> files"  # shown as text, never as markup
    assert not browser.find_elements(By.CSS_SELECTOR, "pre.filetext b")
    link = browser.find_element(By.LINK_TEXT, "Download").get_attribute("href") or ""
    got = httpx2.get(link, cookies={"dm_session": session_cookie(browser)})
    assert got.status_code == 200 and got.content == b"<b>hello</b> files\n"
    assert got.headers["content-disposition"].startswith('attachment; filename="index.html"')
    # A command, quoted as in sh but run without a shell on the host; its exit code shown.
    command_form(browser, server, container, """sh -c 'echo "hi there" $((1+2)); exit 3'""").click()
    wait_for(lambda: browser.find_element(By.ID, "exit-code").text == "3", what="the exit code")
    assert browser.find_element(By.ID, "exec-output").text.strip() == "hi there 3"
    # In a working directory; a relative one is refused with the reason, nothing run.
    command_form(browser, server, container, "pwd", workdir="/srv/site").click()
    wait_for(lambda: browser.find_element(By.ID, "exit-code").text == "0", what="the exit code")
    assert browser.find_element(By.ID, "exec-output").text.strip() == "/srv/site"
    run = command_form(browser, server, container, "touch made-by-a-relative-workdir", workdir="../etc")
    assert "workdir" in submit(browser, run)
    found = server.api(
        "POST",
        "/docker/exec",
        json={"id_or_name": container, "cmd": ["find", "/", "-xdev", "-name", "made-by-a-relative-workdir"]},
    )
    assert found.status_code == 200 and found.json()["stdout"] == ""


def test_deploy_an_upload_then_give_it_a_site(
    browser: WebDriver, server: Server, unique: str, base_image: str, tmp_path: Path
) -> None:
    image = f"{unique}-web:v1"
    context = tmp_path / "web"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN mkdir /www && echo deployed-{unique} > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
    )
    docker_cli("build", "-q", "-t", image, str(context))
    folder = server.upload / f"{unique}-up"
    folder.mkdir(parents=True)
    artefact = folder / f"{unique}-web_v1.tar.lz4"
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    with artefact.open("wb") as out:
        subprocess.run(["lz4", "-q", "-c"], stdin=save.stdout, stdout=out, check=True)
    assert save.wait() == 0
    docker_cli("rmi", image)
    port = free_port()
    app_id = f"{unique}-app"

    log_in(browser, server, server.token)
    browser.get(f"{server.url}/ui/apps")
    form = browser.find_element(By.ID, "deploy")
    Select(form.find_element(By.NAME, "artefact")).select_by_value(f"{unique}-up/{artefact.name}")
    form.find_element(By.NAME, "app_id").send_keys(app_id)
    form.find_element(By.NAME, "container_port").send_keys("80/tcp")
    form.find_element(By.NAME, "host_port").send_keys(str(port))
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(lambda: "/ui/tasks/" in browser.current_url, what="the deploy's task page")
    wait_for(lambda: browser.find_element(By.ID, "status").text == "completed", timeout=90, what="the deploy")
    assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip() == f"deployed-{unique}"
    assert server.api("GET", f"/apps/{app_id}").json()["live_release"] == 1

    domain = f"{unique}.example.com"
    browser.get(f"{server.url}/ui/sites")
    form = browser.find_element(By.ID, "site-create")
    form.find_element(By.NAME, "domain").send_keys(domain)
    form.find_element(By.NAME, "port").send_keys(str(port))
    assert "now proxies" in submit(browser, form.find_element(By.CSS_SELECTOR, "button"))
    through = httpx2.get(f"http://127.0.0.1:{server.nginx.port}/", headers={"Host": domain}, timeout=5)
    assert through.text.strip() == f"deployed-{unique}"
    history = browser.find_element(By.ID, "history").text
    assert "/ui/sites/create" in history and f"domain={domain}" in history
    # A bad domain: refused with the reason, nothing written.
    form = browser.find_element(By.ID, "site-create")
    form.find_element(By.NAME, "domain").send_keys("bad;domain")
    form.find_element(By.NAME, "port").send_keys(str(port))
    assert "domain" in submit(browser, form.find_element(By.CSS_SELECTOR, "button"))
    assert not list(server.nginx.sites.glob("*bad*"))


def test_log_out_and_the_old_cookie_is_refused(browser: WebDriver, server: Server) -> None:
    log_in(browser, server, server.token)
    cookie = session_cookie(browser)
    assert (
        httpx2.get(
            f"{server.url}/ui/tasks", cookies={"dm_session": cookie}, follow_redirects=False
        ).status_code
        == 200
    )
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/logout'] button").click()
    wait_for(lambda: browser.current_url.endswith("/ui/login"), what="the login page")
    again = httpx2.get(f"{server.url}/ui/tasks", cookies={"dm_session": cookie}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/ui/login"
    # A wrong token at the login form: the form again, with the reason.
    browser.find_element(By.ID, "token").send_keys("dm_not-a-token")
    button = browser.find_element(By.CSS_SELECTOR, "form[action='/ui/login'] button")
    assert "unknown, expired or revoked token" in submit(browser, button)


def test_revoking_the_token_ends_its_sessions(browser: WebDriver, server: Server) -> None:
    token_id, token = make_token(server, "read")
    log_in(browser, server, token)
    assert server.api("DELETE", f"/auth/tokens/{token_id}").status_code == 204
    browser.get(f"{server.url}/ui/tasks")
    assert browser.current_url.endswith("/ui/login")


def test_the_dashboard_needs_a_read_token_and_shows_only_its_own_messages(
    browser: WebDriver, server: Server
) -> None:
    log_in_page = f"{server.url}/ui/login"
    browser.get(log_in_page)
    browser.find_element(By.ID, "token").send_keys(make_token(server, "metrics")[1])
    button = browser.find_element(By.CSS_SELECTOR, "form[action='/ui/login'] button")
    assert "needs a token with the 'read' scope" in submit(browser, button)
    assert not [c for c in browser.get_cookies() if c["name"] == "dm_session"]
    # Text from a link made elsewhere is not put on the page.
    browser.get(f"{log_in_page}?error=Your+token+was+rotated&notice=paste+it+at+evil.example&m=forged")
    assert "rotated" not in browser.page_source and "evil.example" not in browser.page_source


def test_the_api_docs_render_under_their_content_security_policy(browser: WebDriver, server: Server) -> None:
    # /docs shares the dashboard's origin: it runs under a policy that allows only the vendored
    # bundle and its one start-up script (by hash). The page must still work under it.
    browser.get(f"{server.url}/docs")
    title = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text, what="the docs"
    )
    assert "docker-manager" in title
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-tag"), what="the operations")
    # An inline script the policy does not name does not run.
    ran = browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        "document.body.appendChild(s); return window.injected === 1;"
    )
    assert ran is False


def test_every_page_fits_a_phone(browser: WebDriver, server: Server, unique: str, base_image: str) -> None:
    """At 390 px no page scrolls sideways (wide tables scroll in their own box, long ids are
    shortened), and no link leads to a 404: an app with a build but no release has its page."""
    folder = server.contexts / f"{unique}-built"
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo {unique}\n")
    built = server.api("POST", "/docker/build", json={"path": folder.name, "tag": f"{unique}:built"})
    assert built.status_code == 200, built.text
    task_id = built.json()["task_id"]
    # A container whose image has no tag: the engine names its image by its full sha256 id.
    image_id = docker_cli("image", "inspect", "--format", "{{.Id}}", f"{unique}:built").stdout.strip()
    docker_cli("run", "-d", "--name", f"{unique}-wide", image_id, "sleep", "60")
    app_without_release = f"{unique}-norelease"
    server.api(
        "POST",
        "/docker/build",
        json={"path": folder.name, "tag": f"{unique}:nr", "app_id": app_without_release},
    )
    # A site made for an app that has no release and ran no task: the Sites page links its app.
    site_only = f"{unique}-siteonly"
    made = server.api(
        "POST",
        "/nginx/site/create",
        json={"domain": f"{site_only}.example.com", "port": free_port(), "app_id": site_only},
    )
    assert made.status_code == 200, made.text
    log_in(browser, server, server.token)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    container = docker_cli("inspect", "--format", "{{.Id}}", f"{unique}-wide").stdout.strip()
    pages = [
        "/ui", "/ui/apps", f"/ui/apps/{app_without_release}", "/ui/containers", f"/ui/containers/{container}",
        "/ui/sites", "/ui/tasks", f"/ui/tasks/{task_id}", "/ui/tokens", "/ui/nodes",
    ]  # fmt: skip
    cookie = {"dm_session": session_cookie(browser)}
    for path in pages:
        answer = httpx2.get(f"{server.url}{path}", cookies=cookie, timeout=30)
        assert answer.status_code == 200, (path, answer.status_code)
        browser.get(f"{server.url}{path}")
        wait_for(lambda: browser.execute_script("return document.readyState") == "complete", what=path)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 391, f"{path} is {width} px wide at 390"
    browser.get(f"{server.url}/ui/apps/{app_without_release}")
    assert "No release" in browser.find_element(By.TAG_NAME, "main").text
    sites = httpx2.get(f"{server.url}/ui/sites", cookies=cookie, timeout=30).text
    linked = set(re.findall(r'href="(/ui/apps/[^"]+)"', sites))
    assert f"/ui/apps/{site_only}" in linked, linked
    for path in linked:
        assert httpx2.get(f"{server.url}{path}", cookies=cookie, timeout=30).status_code == 200, path
    browser.get(f"{server.url}/ui/containers")
    assert (
        image_id[7:19] in browser.page_source
        and image_id not in browser.find_element(By.TAG_NAME, "main").text
    )
    # The login page, as someone without a session meets it.
    browser.delete_all_cookies()
    browser.get(f"{server.url}/ui/login")
    wait_for(lambda: browser.execute_script("return document.readyState") == "complete", what="login")
    assert browser.find_elements(By.NAME, "token"), browser.page_source[:500]
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 391
