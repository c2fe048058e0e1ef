"""The web admin over real HTTPS (hatoba's own CA), with a cookie-keeping client: sessions,
CSRF, roles, throttling, app passwords, the second factor, languages, and that every page's
action gives what the CLI gives."""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pyotp
import pytest

from support.harness import PASSWORDS, ServerThread, make_home
from support.webclient import WebClient

WEB = "[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n[auth]\nmax_delay = 0.05\n"
ADMIN, ADMIN_PASSWORD = "alice@example.test", PASSWORDS["alice@example.test"]
HEAD, HEAD_PASSWORD = "head@school.example", "head-password-1"
PUPIL, PUPIL_PASSWORD = "pupil@school.example", "pupil-password-1"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    home = make_home(tmp_path_factory.mktemp("admin") / "hatoba", extra_config=WEB)
    for args, stdin in ((("domain", "add", "school.example"), None),
                        (("user", "add", HEAD, "--password-stdin"), HEAD_PASSWORD + "\n"),
                        (("user", "add", PUPIL, "--password-stdin"), PUPIL_PASSWORD + "\n"),
                        (("alias", "add", "office@school.example", HEAD), None),
                        (("admin", "grant", ADMIN, "server"), None),
                        (("admin", "grant", HEAD, "school.example"), None)):
        done = home.cli(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
    with ServerThread(home) as server:
        yield server, home


def client(site, language: str = "en") -> WebClient:
    server, home = site
    return WebClient(server.port("https"), home.client_context(), language=language)


def logged_in(site, address: str, password: str, language: str = "en") -> WebClient:
    web = client(site, language)
    answer = web.login(address, password)
    assert answer.status == 303 and answer.header("location") == "/admin/", answer.text
    return web


def cli(site, *args: str, stdin: str | None = None) -> str:
    done = site[1].cli(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- headers and transport ---------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(site):
    web = client(site)
    login = web.get("/admin/login")
    cookie = login.header("set-cookie")
    assert cookie.startswith("__Host-hatoba-login=") and all(
        flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"))
    assert "Domain=" not in cookie
    answers = [login, web.login(ADMIN, ADMIN_PASSWORD), web.get("/admin/"), web.get("/admin/static/hatoba.css")]
    assert answers[1].header("set-cookie").startswith("__Host-hatoba=")
    denied = logged_in(site, PUPIL, PUPIL_PASSWORD).get("/admin/queue")
    assert denied.status == 403
    for answer in [*answers, denied]:
        csp = answer.header("content-security-policy")
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
        assert "unsafe-inline" not in csp
        assert answer.header("x-frame-options") == "DENY"
        assert answer.header("referrer-policy") == "no-referrer"
        assert answer.header("strict-transport-security").startswith("max-age=")
        assert answer.header("cache-control") == "no-store"
        assert answer.header("x-content-type-options") == "nosniff"
    for page in (answers[0], answers[2]):
        assert "<script>" not in page.body and " style=" not in page.body
        assert not re.search(r"<[^>]+\son[a-z]+=", page.body)  # no inline event handlers either


def test_plain_http_sends_the_admin_to_https(site):
    server, _ = site
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                           "-H", "Host: mail.example.test", f"http://127.0.0.1:{server.port('http')}/admin/login"],
                          capture_output=True, text=True, timeout=20)
    status, location = done.stdout.split(" ", 1)
    assert status == "301" and location == f"https://mail.example.test:{server.port('https')}/admin/login"


def test_pages_need_a_session(site):
    web = client(site)
    for path in ("/admin/", "/admin/users", "/admin/queue", "/admin/account"):
        answer = web.get(path)
        assert answer.status == 303 and answer.header("location") == "/admin/login"
    answer = web.post("/admin/users", {"action": "add", "address": "x@example.test", "password": "whatever-1"}, csrf="")
    assert answer.status == 303
    web.cookies["__Host-hatoba"] = "made-up-by-the-client"
    assert web.get("/admin/").status == 303


# -- CSRF -----------------------------------------------------------------------------------------------


def test_the_login_form_needs_its_own_token(site):
    web = client(site)
    web.get("/admin/login")
    assert web.post("/admin/login", {"address": ADMIN, "password": ADMIN_PASSWORD}, csrf="").status == 403
    assert web.post("/admin/login", {"address": ADMIN, "password": ADMIN_PASSWORD}, csrf="forged").status == 403
    other = client(site)
    other.get("/admin/login")
    assert web.post("/admin/login", {"address": ADMIN, "password": ADMIN_PASSWORD}, csrf=other.csrf).status == 403
    assert "__Host-hatoba" not in web.cookies


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(site):
    admin = logged_in(site, ADMIN, ADMIN_PASSWORD)
    other = logged_in(site, ADMIN, ADMIN_PASSWORD)  # another session of the same user
    admin.get("/admin/domains")
    for token in ("", "0" * 43, other.csrf):
        answer = admin.post("/admin/domains", {"action": "add", "domain": "forged.example"}, csrf=token)
        assert answer.status == 403 and "nothing was done" in answer.text
    # A body that is not a form is refused the same way.
    raw = admin.request("POST", "/admin/domains", b'{"action": "add", "domain": "forged.example"}',
                        {"Content-Type": "application/json"})
    assert raw.status == 403
    assert "forged.example" not in cli(site, "domain", "list").split()
    admin.get("/admin/domains")
    assert admin.post("/admin/domains", {"action": "add", "domain": "csrf-ok.example"}).status == 200
    assert "csrf-ok.example" in cli(site, "domain", "list").split()
    cli(site, "domain", "remove", "csrf-ok.example")


# -- roles ------------------------------------------------------------------------------------------------


def test_a_domain_admin_sees_and_changes_only_their_domain(site):
    head = logged_in(site, HEAD, HEAD_PASSWORD)
    head.get("/admin/users")
    csrf = head.csrf
    for path in ("/admin/queue", "/admin/certificates", "/admin/message?id=0", "/admin/users?domain=example.test",
                 "/admin/users?domain=nonexistent.example"):
        assert head.get(path).status == 403, path
    users = head.get("/admin/users")
    assert users.status == 200 and PUPIL in users.text and ADMIN not in users.text
    assert "example.test" not in head.get("/admin/aliases").text.replace("school.example", "")
    assert "office@school.example" in head.get("/admin/aliases").text
    dkim = head.get("/admin/dkim").text
    assert "school.example" in dkim and "example.test" not in dkim.replace("school.example", "")
    dashboard = head.get("/admin/").text
    assert "school.example" in dashboard and " example.test" not in dashboard
    domains = head.get("/admin/domains").text
    assert "school.example" in domains and "example.test" not in domains.replace("school.example", "")
    attempts = [
        ("/admin/users", {"action": "add", "address": "intruder@example.test", "password": "intruder-pass-1"}),
        ("/admin/users", {"action": "passwd", "address": ADMIN, "password": "taken-over-1"}),
        ("/admin/users", {"action": "quota", "address": ADMIN, "quota": "1"}),
        ("/admin/users", {"action": "remove", "address": ADMIN}),
        ("/admin/users", {"action": "remove", "address": "ALICE@EXAMPLE.TEST"}),
        ("/admin/users", {"action": "add", "address": "x@school.example", "password": "x-password-1", "domain": "example.test"}),
        ("/admin/aliases", {"action": "add", "source": "team@example.test", "targets": HEAD}),
        ("/admin/aliases", {"action": "add", "source": "@example.test", "targets": HEAD}),
        ("/admin/aliases", {"action": "remove", "source": "team@example.test"}),
        ("/admin/dkim", {"domain": "example.test", "algorithm": "ed25519"}),
        ("/admin/domains", {"action": "add", "domain": "mine.example"}),
        ("/admin/domains", {"action": "remove", "domain": "example.test"}),
        ("/admin/domains", {"action": "grant", "address": HEAD, "domain": "example.test"}),
        ("/admin/domains", {"action": "grant", "address": HEAD, "domain": "server"}),
        ("/admin/queue", {"action": "flush"}),
        ("/admin/queue", {"action": "delete", "id": "0"}),
    ]
    for path, fields in attempts:
        answer = head.post(path, fields, csrf=csrf)
        assert answer.status == 403, (path, fields, answer.status)
    # Nothing moved.
    assert "intruder@example.test" not in cli(site, "user", "list")
    assert "team@example.test alice@example.test,bob@example.test,friends@example.test" in cli(site, "alias", "list")
    assert "@example.test" not in [line.split()[0] for line in cli(site, "alias", "list").splitlines()]
    assert cli(site, "admin", "list").split("\n")[:2] == [f"{ADMIN} server", f"{HEAD} school.example"]
    assert "mine.example" not in cli(site, "domain", "list")
    assert "example.test" not in cli(site, "dkim", "list")
    with imaplib.IMAP4_SSL("127.0.0.1", site[0].port("imaps"), ssl_context=site[1].client_context()) as imap:
        assert imap.login(ADMIN, ADMIN_PASSWORD)[0] == "OK"
    # Within the domain it may act.
    assert head.post("/admin/users", {"action": "quota", "address": PUPIL, "quota": "50"}).status == 200


def test_a_user_without_a_role_has_only_their_own_pages(site):
    pupil = logged_in(site, PUPIL, PUPIL_PASSWORD)
    for path in ("/admin/domains", "/admin/users", "/admin/aliases", "/admin/dkim", "/admin/queue", "/admin/certificates"):
        assert pupil.get(path).status == 403, path
    for path in ("/admin/", "/admin/account", "/admin/app-passwords", "/admin/security", "/admin/spam"):
        assert pupil.get(path).status == 200, path
    nav = pupil.get("/admin/").body
    assert 'href="/admin/users"' not in nav and 'href="/admin/queue"' not in nav


# -- sessions and logins ------------------------------------------------------------------------------------


def test_a_session_cookie_from_before_logout_is_refused(site):
    web = client(site)
    web.get("/admin/login")
    web.cookies["__Host-hatoba"] = "chosen-by-an-attacker"
    web.post("/admin/login", {"address": ADMIN, "password": ADMIN_PASSWORD})
    first = web.cookies["__Host-hatoba"]
    assert first != "chosen-by-an-attacker"  # a new session at login, never the one brought
    web.login(ADMIN, ADMIN_PASSWORD)
    assert web.cookies["__Host-hatoba"] != first  # and a new one at every login
    old = dict(web.cookies)
    assert web.get("/admin/").status == 200
    answer = web.post("/admin/logout", {})
    assert answer.status == 303 and "__Host-hatoba" not in web.cookies
    replay = client(site)
    replay.cookies.update(old)
    assert replay.get("/admin/").status == 303
    assert replay.post("/admin/domains", {"action": "add", "domain": "replayed.example"}, csrf=web.csrf).status == 303
    assert "replayed.example" not in cli(site, "domain", "list")


def test_a_new_password_ends_the_other_sessions(site):
    cli(site, "user", "add", "dora@school.example", "--password-stdin", stdin="dora-password-1\n")
    laptop = logged_in(site, "dora@school.example", "dora-password-1")
    phone = logged_in(site, "dora@school.example", "dora-password-1")
    laptop.get("/admin/account")
    differ = laptop.post("/admin/account", {"action": "password", "current": "dora-password-1",
                                            "new": "dora-password-2", "again": "dora-password-3"})
    assert differ.status == 400 and "differ" in differ.text
    wrong = laptop.post("/admin/account", {"action": "password", "current": "not-it-at-all",
                                           "new": "dora-password-2", "again": "dora-password-2"})
    assert wrong.status == 400
    changed = laptop.post("/admin/account", {"action": "password", "current": "dora-password-1",
                                             "new": "dora-password-2", "again": "dora-password-2"})
    assert changed.status == 200 and "password was changed" in changed.text
    assert laptop.get("/admin/account").status == 200  # this session goes on (a new cookie)
    assert laptop.post("/admin/account", {"action": "language", "language": "en"}).status == 303  # its new token
    assert phone.get("/admin/account").status == 303
    assert client(site).login("dora@school.example", "dora-password-1").status == 401
    logged_in(site, "dora@school.example", "dora-password-2")


def test_thirty_wrong_web_logins_are_throttled_like_mail_logins(site):
    server, home = site
    victim = "carol@example.test"

    def guess(n: int) -> int:
        return client(site).login(victim, f"wrong-guess-{n:03d}").status

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(guess, range(30)))
    # [auth] pair_failures (10) at once, and one more each 40 s (pair_per_hour 90) while the test runs.
    assert statuses.count(401) <= 11 and statuses.count(429) >= 19, statuses
    assert set(statuses) <= {401, 429}
    answer = client(site).login(victim, PASSWORDS[victim])
    assert answer.status == 429 and "Too many failed logins" in answer.text
    # The same throttle as mail logins: IMAP from this address is refused for the account now.
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context()) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(victim, PASSWORDS[victim])
    status = cli(site, "auth", "status", victim)
    assert victim in status
    cli(site, "auth", "release", victim)
    cli(site, "auth", "release", "127.0.0.1")
    logged_in(site, victim, PASSWORDS[victim])


def test_second_factor(site):
    cli(site, "user", "add", "erin@school.example", "--password-stdin", stdin="erin-password-1\n")
    cli(site, "admin", "grant", "erin@school.example", "school.example")
    web = logged_in(site, "erin@school.example", "erin-password-1")
    other = logged_in(site, "erin@school.example", "erin-password-1")  # another browser, before two-step login
    page = web.get("/admin/security")
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.body).group(1)
    uri = re.search(r'id="totp-uri" href="([^"]+)"|href="([^"]+)" id="totp-uri"', page.body)
    assert uri is not None and "otpauth://totp/" in (uri.group(1) or uri.group(2))
    code = pyotp.TOTP(secret).now
    for fields, status in (
        ({"secret": secret, "code": "000000", "current": "erin-password-1"}, 400),  # wrong code
        ({"secret": secret, "code": code(), "current": "not-her-password"}, 400),  # a stolen session alone
        ({"secret": secret, "code": code()}, 400),
        ({"secret": "0" * 32, "code": "123456", "current": "erin-password-1"}, 403),  # not a secret we make
        ({"secret": "١" * 32, "code": "123456", "current": "erin-password-1"}, 403),
    ):
        assert web.post("/admin/security", {"action": "enable", **fields}).status == status, fields
    on = web.post("/admin/security", {"action": "enable", "secret": secret, "code": code(), "current": "erin-password-1"})
    assert on.status == 200 and "Two-step login is on" in on.text
    assert other.get("/admin/").status == 303  # opened without the second factor: ended
    swap = pyotp.random_base32()
    assert web.post("/admin/security", {"action": "enable", "secret": swap, "code": pyotp.TOTP(swap).now(),
                                        "current": "erin-password-1"}).status == 403  # no silent replacement
    web.post("/admin/logout", {})
    answer = web.login("erin@school.example", "erin-password-1")
    assert answer.status == 303 and answer.header("location") == "/admin/totp"
    half = web.cookies["__Host-hatoba"]
    assert web.get("/admin/users").status == 303  # nothing but the code page until the code
    web.get("/admin/totp")
    assert web.post("/admin/totp", {"code": "123456" if code() != "123456" else "654321"}).status == 401
    used = code()
    done = web.post("/admin/totp", {"code": used})
    assert done.status == 303 and done.header("location") == "/admin/"
    assert web.cookies["__Host-hatoba"] != half
    assert web.get("/admin/users").status == 200
    stale = client(site)
    stale.cookies["__Host-hatoba"] = half
    assert stale.get("/admin/").status == 303
    # The same code does not open a second session.
    again = client(site)
    again.login("erin@school.example", "erin-password-1")
    again.get("/admin/totp")
    assert again.post("/admin/totp", {"code": used}).status == 401
    cli(site, "auth", "release", "erin@school.example")


# -- app passwords ------------------------------------------------------------------------------------------------


def test_an_app_password_logs_in_to_imap_pop3_and_smtp_until_revoked(site):
    server, home = site
    web = logged_in(site, PUPIL, PUPIL_PASSWORD)
    web.get("/admin/app-passwords")
    made = web.post("/admin/app-passwords", {"action": "create", "name": "tablet"})
    password = re.search(r'id="new-app-password">([^<]+)<', made.body).group(1)
    assert "tablet" in made.text and "shown only once" in made.text
    assert password not in web.get("/admin/app-passwords").body  # never shown again
    context = home.client_context()

    def logins_work() -> list[bool]:
        results = []
        try:
            with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context) as imap:
                results.append(imap.login(PUPIL, password)[0] == "OK")
        except imaplib.IMAP4.error:
            results.append(False)
        pop = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=context)
        try:
            pop.user(PUPIL)
            results.append(pop.pass_(password).startswith(b"+OK"))
        except poplib.error_proto:
            results.append(False)
        finally:
            pop.close()
        with smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), context=context) as smtp:
            try:
                results.append(smtp.login(PUPIL, password)[0] == 235)
            except smtplib.SMTPAuthenticationError:
                results.append(False)
        return results

    assert logins_work() == [True, True, True]
    assert client(site).login(PUPIL, password).status == 401  # not a web password
    assert web.post("/admin/app-passwords", {"action": "revoke", "name": "tablet"}).status == 200
    assert logins_work() == [False, False, False]
    cli(site, "auth", "release", PUPIL)


# -- languages ----------------------------------------------------------------------------------------------------


def test_the_browser_language_chooses_and_the_user_setting_overrides(site):
    ja = client(site, "ja,en-US;q=0.8")
    page = ja.get("/admin/login")
    assert '<html lang="ja">' in page.body and "ログイン" in page.text and page.header("content-language") == "ja"
    assert '<html lang="en">' in client(site, "fr, en;q=0.5").get("/admin/login").body
    assert '<html lang="ja">' in client(site, "en;q=0.1, ja;q=0.9").get("/admin/login").body
    web = logged_in(site, PUPIL, PUPIL_PASSWORD, "ja")
    assert "ダッシュボード" in web.get("/admin/").text
    web.get("/admin/account")
    web.post("/admin/account", {"action": "language", "language": "en"})
    assert "Dashboard" in web.get("/admin/").text
    web.post("/admin/account", {"action": "language", "language": ""})
    assert "ダッシュボード" in web.get("/admin/").text


# -- the pages and the CLI give the same result ----------------------------------------------------------------


def _listing(site, *args: str, domain: str) -> list[str]:
    """A CLI listing's lines about `domain`, with the domain's name replaced by DOMAIN."""
    return sorted(line.replace(domain, "DOMAIN") for line in cli(site, *args).splitlines() if domain in line)


def _cli_error(site, *args: str, stdin: str | None = None) -> str:
    done = site[1].cli(*args, stdin=stdin)
    assert done.returncode == 1 and done.stderr.startswith("hatoba: ")
    return done.stderr.removeprefix("hatoba: ").strip()


def test_every_page_action_gives_what_its_cli_command_gives(site):
    from hatoba.store.directory import Directory

    server, home = site
    admin = logged_in(site, ADMIN, ADMIN_PASSWORD)
    web, by_cli = "web.example", "cli.example"

    def post(path: str, fields: dict[str, str], status: int = 200):
        admin.get(path)
        answer = admin.post(path, fields)
        assert answer.status == status, answer.text
        return answer

    # domain add, with an odd spelling: both keep the same normal form.
    post("/admin/domains", {"action": "add", "domain": "WEB.Example"})
    cli(site, "domain", "add", "CLI.Example")
    assert {web, by_cli} <= set(cli(site, "domain", "list").split())
    # user add, passwd and quota
    post("/admin/users", {"action": "add", "address": f"Una@{web}", "password": "una-password-1"})
    cli(site, "user", "add", f"Una@{by_cli}", "--password-stdin", stdin="una-password-1\n")
    assert _listing(site, "user", "list", domain=web) == _listing(site, "user", "list", domain=by_cli) == ["Una@DOMAIN"]
    post("/admin/users", {"action": "passwd", "address": f"una@{web}", "password": "una-password-2"})
    cli(site, "user", "passwd", f"una@{by_cli}", "--password-stdin", stdin="una-password-2\n")
    for text, expected in (("25", 25), ("none", 0), ("default", None)):
        post("/admin/users", {"action": "quota", "address": f"una@{web}", "quota": text})
        cli(site, "user", "quota", f"una@{by_cli}", text)
        with Directory(home.root / "data" / "directory.sqlite3") as directory:
            assert directory.quota_mb(f"una@{web}") == directory.quota_mb(f"una@{by_cli}") == expected
            for domain in (web, by_cli):
                assert directory.authenticate(f"una@{domain}", "una-password-2", app_passwords=False)
    # alias add, remove one target, remove the whole alias
    post("/admin/aliases", {"action": "add", "source": f"team@{web}", "targets": f"una@{web}, friend@elsewhere.example"})
    cli(site, "alias", "add", f"team@{by_cli}", f"una@{by_cli},friend@elsewhere.example")
    assert _listing(site, "alias", "list", domain=web) == _listing(site, "alias", "list", domain=by_cli) == [
        "team@DOMAIN una@DOMAIN,friend@elsewhere.example"]
    post("/admin/aliases", {"action": "remove", "source": f"team@{web}", "target": "friend@elsewhere.example"})
    cli(site, "alias", "remove", f"team@{by_cli}", "friend@elsewhere.example")
    assert _listing(site, "alias", "list", domain=web) == _listing(site, "alias", "list", domain=by_cli) == [
        "team@DOMAIN una@DOMAIN"]
    post("/admin/aliases", {"action": "remove", "source": f"team@{web}"})
    cli(site, "alias", "remove", f"team@{by_cli}")
    assert _listing(site, "alias", "list", domain=web) == _listing(site, "alias", "list", domain=by_cli) == []
    # admin grant and revoke
    post("/admin/domains", {"action": "grant", "address": f"una@{web}", "domain": web})
    cli(site, "admin", "grant", f"una@{by_cli}", by_cli)
    assert _listing(site, "admin", "list", domain=web) == _listing(site, "admin", "list", domain=by_cli) == [
        "una@DOMAIN DOMAIN"]
    post("/admin/domains", {"action": "revoke", "address": f"una@{web}", "domain": web})
    cli(site, "admin", "revoke", f"una@{by_cli}", by_cli)
    assert _listing(site, "admin", "list", domain=web) == _listing(site, "admin", "list", domain=by_cli) == []
    # DKIM key
    made = post("/admin/dkim", {"domain": web, "algorithm": "ed25519"})
    cli(site, "dkim", "keygen", by_cli, "--algorithm", "ed25519")
    web_key, cli_key = _listing(site, "dkim", "list", domain=web), _listing(site, "dkim", "list", domain=by_cli)
    assert len(web_key) == len(cli_key) == 1 and web_key[0].split()[2:] == cli_key[0].split()[2:]
    record = cli(site, "dkim", "show", web).strip().splitlines()[-1]
    assert record.split(" IN TXT ")[0] in made.text  # the page shows the record to publish
    # spam lists (the user's own page, the CLI names the user)
    una = logged_in(site, f"una@{web}", "una-password-2")
    for kind, sender in (("block", "@spam.example"), ("allow", "friend@elsewhere.example")):
        una.get("/admin/spam")
        assert una.post("/admin/spam", {"action": kind, "sender": sender}).status == 200
        cli(site, "spam", kind, f"una@{by_cli}", sender)
    assert cli(site, "spam", "list", f"una@{web}") == cli(site, "spam", "list", f"una@{by_cli}")
    una.get("/admin/spam")
    una.post("/admin/spam", {"action": "remove", "sender": "@spam.example"})
    cli(site, "spam", "remove", f"una@{by_cli}", "@spam.example")
    assert cli(site, "spam", "list", f"una@{web}") == cli(site, "spam", "list", f"una@{by_cli}") == (
        "allow friend@elsewhere.example\n")
    # The refusals are the CLI's, word for word.
    for fields, args in (
        ({"action": "add", "domain": web}, ("domain", "add", web)),
        ({"action": "remove", "domain": web}, ("domain", "remove", web)),
    ):
        admin.get("/admin/domains")
        refused = admin.post("/admin/domains", fields)
        assert refused.status == 400 and _cli_error(site, *args) in refused.text
    admin.get("/admin/users")
    refused = admin.post("/admin/users", {"action": "add", "address": f"short@{web}", "password": "short"})
    assert refused.status == 400
    assert _cli_error(site, "user", "add", f"short@{by_cli}", "--password-stdin", stdin="short\n") in refused.text
    # user remove, domain remove
    post("/admin/users", {"action": "remove", "address": f"una@{web}"})
    cli(site, "user", "remove", f"una@{by_cli}")
    post("/admin/domains", {"action": "remove", "domain": web})
    cli(site, "domain", "remove", by_cli)
    assert not {web, by_cli} & set(cli(site, "domain", "list").split())


def test_queue_actions_on_the_page_and_in_the_cli_agree(site):
    server, home = site
    admin = logged_in(site, ADMIN, ADMIN_PASSWORD)
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        for n in range(2):  # forward@ goes to a closed port: the messages stay queued
            smtp.sendmail("sender@elsewhere.example", ["forward@example.test"], f"Subject: q{n}\r\n\r\nbody\r\n")

    def queued() -> dict[str, str]:
        lines = [line for line in cli(site, "queue", "list").splitlines() if "someone@elsewhere.example" in line]
        return {line.split()[0]: line for line in lines}

    from support.harness import wait_for

    assert wait_for(lambda: len(queued()) >= 2)
    first, second = sorted(queued())[:2]
    admin.get("/admin/queue")
    assert first in admin.get("/admin/queue").text
    admin.post("/admin/queue", {"action": "hold", "id": first})
    cli(site, "queue", "hold", second)
    assert "next held" in queued()[first] and "next held" in queued()[second]
    admin.get("/admin/queue")
    admin.post("/admin/queue", {"action": "release", "id": first})
    cli(site, "queue", "release", second)
    assert "next held" not in queued()[first] and "next held" not in queued()[second]
    admin.get("/admin/queue")
    assert admin.post("/admin/queue", {"action": "delete", "id": first}).status == 200
    cli(site, "queue", "delete", second)
    assert first not in queued() and second not in queued()
    admin.get("/admin/queue")
    gone = admin.post("/admin/queue", {"action": "delete", "id": first})
    assert gone.status == 400 and "No such message" in gone.text
    assert "no message" in _cli_error(site, "queue", "delete", first)


def test_a_user_sets_and_clears_their_apop_secret(site):
    server, home = site
    cli(site, "user", "add", "fumi@school.example", "--password-stdin", stdin="fumi-password-1\n")
    web = logged_in(site, "fumi@school.example", "fumi-password-1")
    web.get("/admin/account")
    same = web.post("/admin/account", {"action": "apop-on", "apop": "fumi-password-1", "apop_again": "fumi-password-1",
                                       "current": "fumi-password-1"})
    assert same.status == 400 and "other than your password" in same.text
    unchecked = web.post("/admin/account", {"action": "apop-on", "apop": "fumi-apop-secret",
                                            "apop_again": "fumi-apop-secret", "current": "a-guess-at-it"})
    assert unchecked.status == 400 and "current password is not right" in unchecked.text
    on = web.post("/admin/account", {"action": "apop-on", "apop": "fumi-apop-secret", "apop_again": "fumi-apop-secret",
                                     "current": "fumi-password-1"})
    assert on.status == 200 and 'id="apop-state"' in on.body

    def apop(secret: str) -> bool:
        pop = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=home.client_context())
        try:
            return pop.apop("fumi@school.example", secret).startswith(b"+OK")
        except poplib.error_proto:
            return False
        finally:
            pop.close()

    assert apop("fumi-apop-secret") and not apop("fumi-password-1")
    web.get("/admin/account")
    assert web.post("/admin/account", {"action": "apop-off"}).status == 200
    assert not apop("fumi-apop-secret")
    cli(site, "auth", "release", "fumi@school.example")


def test_a_user_forwards_their_mail_from_the_page_as_the_cli_does(site):
    server, home = site
    for name in ("gen", "hana"):
        cli(site, "user", "add", f"{name}@school.example", "--password-stdin", stdin=f"{name}-password-1\n")
    web = logged_in(site, "gen@school.example", "gen-password-1")
    web.get("/admin/account")
    saved = web.post("/admin/account", {"action": "forward", "targets": "hana@school.example"})  # no "keep": no copy
    assert saved.status == 200 and "forwarded from now on" in saved.text
    cli(site, "user", "forward", "pupil@school.example", "hana@school.example", "--no-copy")
    assert cli(site, "user", "forward", "gen@school.example").replace("gen@", "X@") == \
        cli(site, "user", "forward", "pupil@school.example").replace("pupil@", "X@")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        smtp.sendmail("someone@elsewhere.example", ["gen@school.example"], b"Subject: for gen\r\n\r\nhello\r\n")
    assert any(b"Subject: for gen" in m for m in home.wait_messages("hana@school.example", 1))
    assert not home.messages("gen@school.example")
    loop = web.post("/admin/account", {"action": "forward", "targets": "gen@school.example", "keep": "1"})
    assert loop.status == 400 and "itself" in loop.text
    off = web.post("/admin/account", {"action": "forward", "targets": "", "keep": "1"})
    assert off.status == 200 and "Forwarding is off" in off.text
    cli(site, "user", "forward", "pupil@school.example", "--off")
    assert "no forwarding" in cli(site, "user", "forward", "gen@school.example")


# -- what an attack on the pages found, kept found ---------------------------------------------------------------


def test_a_domain_admin_cannot_take_over_an_account_with_wider_rights(site):
    cli(site, "user", "add", "boss@school.example", "--password-stdin", stdin="boss-password-1\n")
    cli(site, "admin", "grant", "boss@school.example", "server")
    cli(site, "domain", "add", "college.example")
    cli(site, "user", "add", "dean@school.example", "--password-stdin", stdin="dean-password-1\n")
    cli(site, "admin", "grant", "dean@school.example", "college.example")  # administers another domain too
    head = logged_in(site, HEAD, HEAD_PASSWORD)
    head.get("/admin/users")
    for target in ("boss@school.example", "BOSS@school.example", "dean@school.example"):
        for fields in ({"action": "passwd", "password": "taken-over-1"}, {"action": "quota", "quota": "1"},
                       {"action": "remove"}):
            assert head.post("/admin/users", {"address": target, **fields}).status == 403, (target, fields)
    # The roles of the domain it administers: the domain by name only, never the server.
    assert head.post("/admin/domains", {"action": "grant", "address": HEAD, "domain": "server"}).status == 403
    admin = logged_in(site, ADMIN, ADMIN_PASSWORD)
    admin.get("/admin/domains")
    refused = admin.post("/admin/domains", {"action": "grant", "address": PUPIL, "domain": "server"})
    assert refused.status == 400 and "server" in refused.text
    assert f"{PUPIL} server" not in cli(site, "admin", "list")
    assert logged_in(site, "boss@school.example", "boss-password-1").get("/admin/queue").status == 200
    # A server administrator may.
    admin.get("/admin/users")
    assert admin.post("/admin/users", {"action": "quota", "address": "dean@school.example", "quota": "5"}).status == 200
    for account in ("boss@school.example", "dean@school.example"):
        cli(site, "user", "remove", account)
    cli(site, "domain", "remove", "college.example")


def test_guessing_the_current_password_from_a_session_is_throttled(site):
    cli(site, "user", "add", "gus@school.example", "--password-stdin", stdin="gus-password-1\n")
    web = logged_in(site, "gus@school.example", "gus-password-1")
    web.get("/admin/account")
    answers = [web.post("/admin/account", {"action": "password", "current": f"guess-{n:02d}-xyz",
                                           "new": "gus-password-2", "again": "gus-password-2"}) for n in range(14)]
    assert answers[0].status == 400 and "current password is not right" in answers[0].text
    assert any("Too many failed logins" in a.text for a in answers[-3:])
    # Counted with the mail logins: the address and account are throttled for IMAP too.
    assert "gus@school.example" in cli(site, "auth", "status", "gus@school.example")
    cli(site, "auth", "release", "gus@school.example")


def test_hostile_cookie_headers_are_read_quickly_and_do_not_hide_the_session(site):
    import time

    web = logged_in(site, PUPIL, PUPIL_PASSWORD)
    session = web.cookies["__Host-hatoba"]
    started = time.monotonic()
    for _ in range(20):
        answer = web.request("GET", "/admin/", headers={"Cookie": 'a="' + "\\" * 7900 + '"'})
        assert answer.status in (303, 431)
    assert time.monotonic() - started < 5
    # Other sites' cookies that the standard library's parser gives up on do not hide ours.
    odd = {"Cookie": f'prefs={{"a":1}}; x=a b; flag; path=/; __Host-hatoba={session}'}
    assert web.request("GET", "/admin/", headers=odd).status == 200


def test_no_logging_out_by_a_link_and_no_admin_under_other_names(site):
    web = logged_in(site, PUPIL, PUPIL_PASSWORD)
    assert web.get("/admin/logout").status == 405
    assert web.get("/admin/").status == 200  # still logged in
    other = client(site)
    other.host = "autoconfig.example.test"
    moved = other.get("/admin/login")
    assert moved.status == 301
    assert moved.header("location") == "https://mail.example.test/admin/"
    assert other.get("/mail/config-v1.1.xml").status == 200  # what that name is for still answers


def test_a_new_password_revokes_the_app_passwords(site):
    server, home = site
    cli(site, "user", "add", "ivy@school.example", "--password-stdin", stdin="ivy-password-1\n")
    web = logged_in(site, "ivy@school.example", "ivy-password-1")
    web.get("/admin/app-passwords")
    made = web.post("/admin/app-passwords", {"action": "create", "name": "phone"})
    password = re.search(r'id="new-app-password">([^<]+)<', made.body).group(1)
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context()) as imap:
        assert imap.login("ivy@school.example", password)[0] == "OK"
    cli(site, "user", "passwd", "ivy@school.example", "--password-stdin", stdin="ivy-password-2\n")
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context()) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("ivy@school.example", password)
    assert '<td class="name">phone</td>' not in logged_in(site, "ivy@school.example", "ivy-password-2").get(
        "/admin/app-passwords").body
    cli(site, "auth", "release", "ivy@school.example")


def test_domain_names_in_links_are_read_in_any_spelling(site):
    head = logged_in(site, HEAD, HEAD_PASSWORD)
    for spelling in ("SCHOOL.EXAMPLE", "school.example.", "School.Example"):
        answer = head.get(f"/admin/users?domain={spelling}")
        assert answer.status == 200 and PUPIL in answer.text, spelling
    assert head.get("/admin/users?domain=example.test.").status == 403
    for page in ("-1", "10" * 100, "%D9%A3", "x"):
        assert head.get(f"/admin/users?page={page}").status == 200
        assert head.get(f"/admin/aliases?page={page}&q=%00").status == 200


def test_a_domain_admin_cannot_make_again_an_address_whose_mail_is_still_stored(site):
    server, home = site
    cli(site, "user", "add", "kai@school.example", "--password-stdin", stdin="kai-password-1\n")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
        smtp.sendmail("someone@elsewhere.example", ["kai@school.example"], b"Subject: private\r\n\r\nfor kai\r\n")
    assert home.wait_messages("kai@school.example", 1)
    cli(site, "user", "remove", "kai@school.example")  # its mail stays in place
    head = logged_in(site, HEAD, HEAD_PASSWORD)
    head.get("/admin/users")
    taken = head.post("/admin/users", {"action": "add", "address": "kai@school.example", "password": "head-owns-it"})
    assert taken.status == 403 and "kai@school.example" not in cli(site, "user", "list")
    fresh = head.post("/admin/users", {"action": "add", "address": "new-kai@school.example", "password": "new-kai-pass"})
    assert fresh.status == 200 and "new-kai@school.example" in cli(site, "user", "list")
    admin = logged_in(site, ADMIN, ADMIN_PASSWORD)
    admin.get("/admin/users")
    assert admin.post("/admin/users", {"action": "add", "address": "kai@school.example",
                                       "password": "kai-password-2"}).status == 200


def test_two_cookie_fields_and_odd_host_spellings(site):
    web = logged_in(site, PUPIL, PUPIL_PASSWORD)
    session = web.cookies.pop("__Host-hatoba")
    conn_headers = [("Cookie", "a=b"), ("Cookie", f"__Host-hatoba={session}")]
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", site[0].port("https"), context=site[1].client_context(), timeout=10)
    conn.putrequest("GET", "/admin/", skip_host=True)
    conn.putheader("Host", "mail.example.test")
    for name, value in conn_headers:
        conn.putheader(name, value)
    conn.endheaders()
    assert conn.getresponse().status == 200
    conn.close()
    web.cookies["__Host-hatoba"] = session
    for host in ("mail.example.test..", "mail.example.test:abc", "evil.example"):
        web.host = host
        assert web.get("/admin/").status == 301, host
    web.host = "mail.example.test."
    assert web.get("/admin/").status == 200


def test_every_change_is_an_audit_line_naming_who_from_where_and_what(site, caplog):
    import logging

    admin = logged_in(site, ADMIN, ADMIN_PASSWORD)
    admin.get("/admin/aliases")
    with caplog.at_level(logging.INFO, logger="hatoba.mail"):
        assert admin.post("/admin/aliases", {"action": "add", "source": "audit@school.example",
                                             "targets": HEAD}).status == 200
        admin.post("/admin/aliases", {"action": "remove", "source": "audit@school.example"})
        admin.get("/admin/account")
        admin.post("/admin/account", {"action": "language", "language": "en"})
    lines = [r.getMessage() for r in caplog.records if r.name == "hatoba.mail" and r.getMessage().startswith("admin ")]
    for action in ("alias.add", "alias.remove", "account.language"):
        assert any(f"by={ADMIN}" in line and "ip=127.0.0.1" in line and f"action={action}" in line for line in lines), (
            action, lines)
    assert any("target=audit@school.example" in line and f"to={HEAD}" in line for line in lines)
