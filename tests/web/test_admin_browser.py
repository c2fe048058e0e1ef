"""The web admin in a real browser: Debian's chromium, headless, driven by selenium through
chromium-driver, against `hatoba serve` on loopback.

The walk a new installation takes: the first server administrator (made with
`hatoba admin grant`) logs in, creates a domain, a user who becomes its domain
administrator, another user and an alias; that user logs in, changes their
password and makes an app password; a mail program (smtplib) sends with it
through 587; the administrator sees the delivery. Every main page is
photographed in English and in Japanese into test-artifacts/screenshots/, and
the Japanese pages are searched for English left untranslated.

Chromium trusts only this server's key (--ignore-certificate-errors-spki-list,
honoured with a --user-data-dir of its own), so the pages are a secure context
with hatoba's real certificate and the __Host- cookies work as on a real site.
"""

from __future__ import annotations

import base64
import hashlib
import re
import smtplib
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.harness import ServerProcess, _merge_config, free_port_offset, make_home
from support.peers import find, needs

from selenium import webdriver  # noqa: E402 - a dev extra, always installed by make test
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [needs("chromium", "the browser tests"), needs("chromedriver", "selenium drives chromium through it")]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
HOST = "mail.example.test"
ADMIN, ADMIN_PASSWORD = "alice@example.test", "alice-password-1"
MAIN_PAGES = ("", "domains", "users", "aliases", "dkim", "queue", "certificates", "account", "app-passwords",
              "security", "spam")
# Words that are the same in Japanese pages: names, protocols, units, and what the admin typed.
KEPT = {"hatoba", "DKIM", "DNS", "IMAP", "POP3", "POP", "APOP", "SMTP", "SSL", "TLS", "MiB", "RSA", "Ed25519", "ACME", "UTC",
        "English", "TXT", "MX", "SPF", "DMARC", "TLSA", "SRV", "STS", "RPT", "ID", "CN", "CA", "OK", "mail", "example",
        "test", "school", "alice", "head", "pupil", "office", "phone", "bob", "carol", "friends", "team", "forward",
        "postmaster", "someone", "elsewhere", "default", "info", "warning", "critical", "delivered", "hatoba-ca"}


def spki_pin(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def browser(home, profile: Path, language: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = find("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,1000", f"--user-data-dir={profile}", f"--lang={language}",
                f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
                f"--ignore-certificate-errors-spki-list={spki_pin(home.root / 'tls' / 'server.crt')}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    driver = webdriver.Chrome(service=Service(find("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    offset = free_port_offset((25, 587, 465, 110, 995, 143, 993, 80, 443))
    home = make_home(root / "hatoba", port_offset=offset)
    _merge_config(home.config_path, '[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n'
                                    '[log]\nfile = "hatoba.log"\n')
    # The first administrator is made on the command line, as the README says.
    done = home.cli("admin", "grant", ADMIN, "server")
    assert done.returncode == 0, done.stderr
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with ServerProcess(home, offset) as server:
        yield server, home, root


@pytest.fixture
def open_page(served, tmp_path, request):
    """A function giving a Page in a new browser that asks for `language`; closed after the test."""
    server, home, _ = served

    def opened(language: str) -> Page:
        driver = browser(home, tmp_path / f"profile-{language}", language)
        request.addfinalizer(driver.quit)
        return Page(driver, f"https://{HOST}:{server.port(443)}", language)

    return opened


class Page:
    """One browser, and the steps a person takes in it."""

    def __init__(self, driver: webdriver.Chrome, base: str, language: str) -> None:
        self.driver, self.base, self.language = driver, base, language

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def fill(self, **fields: str) -> None:
        for element_id, value in fields.items():
            element = self.driver.find_element(By.ID, element_id.replace("_", "-") if element_id not in (
                "address", "password", "current", "new", "again", "domain", "source", "targets", "sender") else element_id)
            element.clear()
            element.send_keys(value)

    def click(self, element_id: str) -> None:
        """Click a submit button and wait for the page it leads to."""
        old_page = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.ID, element_id).click()
        WebDriverWait(self.driver, 20).until(staleness_of(old_page))

    def text(self, css: str = "main") -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def notice(self) -> str:
        return self.driver.find_element(By.ID, "notice").text

    def shot(self, name: str) -> None:
        path = SCREENSHOTS / f"{name}-{self.language}.png"
        path.unlink(missing_ok=True)
        assert self.driver.save_screenshot(str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000

    def login(self, address: str, password: str) -> None:
        self.open("/admin/")
        assert self.driver.current_url.endswith("/admin/login")
        self.fill(address=address, password=password)
        self.click("login")
        assert self.driver.current_url.endswith("/admin/"), self.text()

    def logout(self) -> None:
        self.click("logout")
        assert self.driver.current_url.endswith("/admin/login")


def test_first_login_to_a_delivered_message_in_a_real_browser(served, open_page):
    server, home, _ = served
    page = open_page("en")
    driver = page.driver
    page.open("/admin/login")
    page.shot("login")
    # The first server administrator logs in.
    page.login(ADMIN, ADMIN_PASSWORD)
    assert driver.find_element(By.ID, "who").text == ADMIN
    assert driver.find_element(By.TAG_NAME, "h1").text == "Dashboard"
    # A domain.
    page.open("/admin/domains")
    page.fill(domain="school.example")
    page.click("add-domain")
    assert page.notice() == "The domain was added."
    assert "school.example" in page.text("#domains")
    # Its administrator, and a user.
    page.open("/admin/users?domain=school.example")
    for address, password in (("head@school.example", "head-password-1"), ("pupil@school.example", "pupil-password-1")):
        page.fill(new_address=address, new_password=password)
        page.click("add-user")
        assert page.notice() == "The user was added."
        assert address in page.text("#users")
    page.open("/admin/domains")
    page.fill(grant_address="head@school.example")
    page.click("grant")
    assert page.notice() == "The user is now an administrator of that domain."
    assert "head@school.example" in page.text("#domains")
    # An alias.
    page.open("/admin/aliases")
    page.fill(source="office@school.example", targets="head@school.example, pupil@school.example")
    page.click("add-alias")
    assert page.notice() == "The alias was saved."
    assert "head@school.example, pupil@school.example" in page.text("#aliases")
    page.logout()

    # The user: a new password, then an app password for the phone.
    page.login("pupil@school.example", "pupil-password-1")
    assert not driver.find_elements(By.CSS_SELECTOR, 'nav a[href="/admin/users"]')  # no admin pages
    page.open("/admin/account")
    page.fill(current="pupil-password-1", new="pupil-password-2", again="pupil-password-2")
    page.click("change-password")
    assert page.notice() == "The password was changed."
    page.open("/admin/app-passwords")
    page.fill(app_name="phone")
    page.click("make-app-password")
    assert "shown only once" in page.notice()
    app_password = driver.find_element(By.ID, "new-app-password").text
    assert re.fullmatch(r"([a-z2-9]{4}-){5}[a-z2-9]{4}", app_password)
    assert "phone" in page.text("#app-passwords")
    page.shot("app-password-made")
    page.logout()

    # The phone sends through 587 with the app password (STARTTLS, then AUTH).
    with smtplib.SMTP("127.0.0.1", server.port(587), timeout=30) as smtp:
        smtp.starttls(context=home.client_context())
        smtp.login("pupil@school.example", app_password)
        smtp.sendmail("pupil@school.example", ["office@school.example"],
                      b"From: pupil@school.example\r\nTo: office@school.example\r\nSubject: hello\r\n\r\nSent from my phone.\r\n")
    # The old password no longer logs in; the new one does (checked through the browser).
    page.open("/admin/login")
    page.fill(address="pupil@school.example", password="pupil-password-1")
    page.click("login")
    assert driver.find_element(By.ID, "error").text == "Wrong address or password."

    # The administrator sees the delivery.
    page.login(ADMIN, ADMIN_PASSWORD)
    deadline = time.monotonic() + 20
    while "head@school.example" not in page.text() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.open("/admin/")
    recent = page.text("#recent")
    assert "delivered" in recent and "head@school.example" in recent and "pupil@school.example" in recent
    queue_id = driver.find_element(By.CSS_SELECTOR, "#recent a").text
    page.open(f"/admin/message?id={queue_id}")
    assert "delivered" in page.text("#lines") and f"qid={queue_id}" in page.text("#lines")
    page.open("/admin/users?domain=school.example")
    stored = {row.find_element(By.CSS_SELECTOR, "td.address").text: row.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text
              for row in driver.find_elements(By.CSS_SELECTOR, "#users tbody tr")}
    assert stored["head@school.example"] != "0 B" and stored["pupil@school.example"] != "0 B", stored
    for name in MAIN_PAGES:
        page.open(f"/admin/{name}")
        assert driver.find_element(By.TAG_NAME, "h1").text
        page.shot(name or "dashboard")
    # On a phone's screen the pages still fit: nothing wider than the window but scrolling tables.
    driver.set_window_size(390, 844)
    for name in ("", "users", "app-passwords"):
        page.open(f"/admin/{name}")
        page.shot(f"phone-{name or 'dashboard'}")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
        assert overflow <= 1, (name, overflow)
    assert home.wait_messages("head@school.example", 1) and home.wait_messages("pupil@school.example", 1)


def test_japanese_pages_leave_no_english_untranslated(served, open_page):
    server, home, _ = served
    page = open_page("ja")
    driver = page.driver
    page.open("/admin/login")
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ja"
    assert driver.find_element(By.TAG_NAME, "h1").text == "ログイン"
    page.shot("login")
    page.login(ADMIN, ADMIN_PASSWORD)
    leftovers: dict[str, set[str]] = {}
    for name in MAIN_PAGES:
        page.open(f"/admin/{name}")
        page.shot(name or "dashboard")
        # Text a person reads, without what is data: records, keys, log lines, the findings
        # and addresses.
        script = ("const main = document.body.cloneNode(true);"
                  "main.querySelectorAll('code, pre, td, option, #who').forEach(e => e.remove());"
                  "return main.innerText;")
        visible = driver.execute_script(script)
        # Data inside the sentences: certificate names, proper names, commands and their options.
        visible = re.sub(r"(CN|O|OU)=[^,)）]*|(hatoba )?private CA for|Let's Encrypt|\"[^\"]*\"|hatoba( [a-z]+)+"
                         r"|\S*[-_./=:@\[\]]\S*", " ", visible)
        # English left untranslated shows as a run of words; a single word is a name or a key.
        runs = {run for run in re.findall(r"[A-Za-z']+(?: [A-Za-z']+){2,}", visible) if set(run.split()) - KEPT}
        if runs:
            leftovers[name or "dashboard"] = runs
    assert not leftovers, "; ".join(f"{page}: {' | '.join(sorted(runs))}" for page, runs in leftovers.items())
