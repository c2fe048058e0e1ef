"""The rules of blocklist sites and greylisting on their own: postscreen's site notation,
query names, and the greylisting clock (a fake one) over the real SQLite store."""

from __future__ import annotations

import pytest

from hatoba.checks.dnsbl import parse_site, query_name
from hatoba.checks.greylisting import Greylisting, client_network, normal_sender
from hatoba.store.directory import Directory
from hatoba.store.greylist import GreylistStore


@pytest.mark.parametrize("text, zone, weight, hits, misses", [
    ("zen.spamhaus.org", "zen.spamhaus.org", 1.0, ["127.0.0.2", "127.0.0.11"], ["127.255.255.254", "10.0.0.1"]),
    ("bl.example*3", "bl.example", 3.0, ["127.0.0.2"], ["127.255.255.252"]),
    ("list.dnswl.org=127.0.[0..255].[1..3]*-2", "list.dnswl.org", -2.0, ["127.0.15.1", "127.0.0.3"],
     ["127.0.15.0", "127.0.1.4", "127.1.0.1"]),
    ("b.example=127.0.0.[2;4;10]", "b.example", 1.0, ["127.0.0.4"], ["127.0.0.3"]),
])
def test_postscreen_site_notation(text, zone, weight, hits, misses):
    site = parse_site(text)
    assert (site.zone, site.weight) == (zone, weight)
    assert all(site.matches(a) for a in hits) and not any(site.matches(a) for a in misses)


@pytest.mark.parametrize("text", ["", "*2", "nodot", "x.test=127.0.0", "x.test=127.0.0.[1..]", "x.test*heavy",
                                  "x.test=127.0.0.300"])
def test_site_mistakes_are_refused_with_a_reason(text):
    with pytest.raises(ValueError):
        parse_site(text)


def test_query_names():
    assert query_name("192.0.2.10", "bl.test") == "10.2.0.192.bl.test"
    assert query_name("::ffff:192.0.2.10", "bl.test") == "10.2.0.192.bl.test"
    assert query_name("2001:db8::1", "bl.test") == "1.0.0.0." + "0.0.0.0." * 5 + "8.b.d.0.1.0.0.2.bl.test"
    assert query_name("not-an-ip", "bl.test") is None


def test_networks_and_senders_as_greylisting_keys_them():
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
    assert normal_sender("prvs=1234abcd=Bounce+list-42@Example.ORG") == "bounce@example.org"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def greylist(tmp_path):
    path = tmp_path / "directory.sqlite3"
    Directory(path)  # makes the tables
    clock = Clock()
    store = GreylistStore(path)
    yield Greylisting(store, delay=300, window=4 * 3600, keep=35 * 86400, auto_allow=3, clock=clock), clock
    store.close()


def test_waits_then_passes_then_stays_passed(greylist):
    rules, clock = greylist
    first = rules.decide("192.0.2.1", "a@x.test", ("bob@example.test",), authenticated="")
    assert first.wait and first.retry_in == 300
    clock.now += 100
    again = rules.decide("192.0.2.200", "a@x.test", ("bob@example.test",), authenticated="")  # same /24
    assert again.wait and again.retry_in == 200
    clock.now += 200
    assert not rules.decide("192.0.2.9", "a@x.test", ("bob@example.test",), authenticated="").wait
    clock.now += 30 * 86400
    assert not rules.decide("192.0.2.9", "a@x.test", ("bob@example.test",), authenticated="").wait


def test_a_retry_after_the_window_starts_over(greylist):
    rules, clock = greylist
    assert rules.decide("192.0.2.1", "a@x.test", ("bob@example.test",), authenticated="").wait
    clock.now += 5 * 3600
    late = rules.decide("192.0.2.1", "a@x.test", ("bob@example.test",), authenticated="")
    assert late.wait and late.retry_in == 300


def test_every_recipient_must_have_passed_and_authenticated_senders_never_wait(greylist):
    rules, clock = greylist
    assert rules.decide("192.0.2.1", "a@x.test", ("bob@example.test",), authenticated="").wait
    clock.now += 301
    both = rules.decide("192.0.2.1", "a@x.test", ("bob@example.test", "carol@example.test"), authenticated="")
    assert both.wait  # carol's triplet is new
    assert not rules.decide("198.51.100.1", "b@y.test", ("bob@example.test",), authenticated="SPF (y.test)").wait


def test_a_network_that_passed_often_enough_skips_it(greylist):
    rules, clock = greylist
    for n in range(3):
        rcpt = (f"user{n}@example.test",)
        assert rules.decide("203.0.113.5", "a@x.test", rcpt, authenticated="").wait
        clock.now += 301
        assert not rules.decide("203.0.113.5", "a@x.test", rcpt, authenticated="").wait
    fresh = rules.decide("203.0.113.99", "someone-else@z.test", ("new@example.test",), authenticated="")
    assert not fresh.wait and "often enough" in fresh.note


def test_rates_count_an_ipv6_client_by_its_64():
    from hatoba.net.rates import client_key

    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"


def test_a_deleted_junk_folder_is_made_again_by_the_next_delivery(tmp_path):
    import shutil

    from hatoba.store.maildir import MaildirStore

    store = MaildirStore(tmp_path / "mail", hostname="mx.example.test")
    src = tmp_path / "m.eml"
    src.write_bytes(b"Subject: spam\r\n\r\nbody\r\n")
    first = store.deliver("bob@example.test", src, folder=".Junk")
    shutil.rmtree(first.path.parent.parent)  # the user deleted Junk over IMAP
    again = store.deliver("bob@example.test", src, folder=".Junk")
    assert again.path.is_file() and (again.path.parent.parent / "maildirfolder").is_file()


def test_junk_feedback_keeps_a_year(tmp_path):
    from hatoba.store.spamlists import SpamLists

    path = tmp_path / "directory.sqlite3"
    Directory(path)
    lists = SpamLists(path)
    lists.record_feedback("bob@example.test", "<old@x>", "spam", when=1_000_000.0)
    lists.record_feedback("bob@example.test", "<new@x>", "ham", when=1_000_000.0 + 400 * 86400)
    assert lists.feedback("bob@example.test") == [("<old@x>", "spam"), ("<new@x>", "ham")]
    for n in range(99):  # the 101st verdict cleans up
        lists.record_feedback("bob@example.test", f"<n{n}@x>", "ham", when=1_000_000.0 + 400 * 86400)
    assert ("<old@x>", "spam") not in lists.feedback("bob@example.test")
    lists.close()
