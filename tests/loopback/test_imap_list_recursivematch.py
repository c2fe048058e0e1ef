"""LIST (SUBSCRIBED RECURSIVEMATCH) (RFC 5258 §3.5): a name that matches but is not
subscribed is listed with CHILDINFO ("SUBSCRIBED") when a subscribed name below it is not
listed itself; when every such name is listed, the parent is not."""

from __future__ import annotations

from test_imap_extensions import client, raw


def test_recursivematch_lists_unsubscribed_parents_with_childinfo(server, hatoba_home):
    m = client(server, hatoba_home)
    for name in ("t", "t.a", "t.a.x", "t.b", "t.b.b", "t.c", "t.c.c", "t.c.d"):
        assert raw(m, f"CREATE {name}")[0].split()[1] == "OK"
    for name in ("t.a.x", "t.b.b", "t.c.c", "t.c.d", "t.gone.y"):  # t.gone.y does not exist
        assert raw(m, f"SUBSCRIBE {name}")[0].split()[1] == "OK"

    def listed(command: str) -> set[bytes]:
        status, lines = raw(m, command)
        assert status.split()[1] == "OK", status
        return set(lines)

    assert listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" t.%') == {
        b'* LIST () "." t.a ("CHILDINFO" ("SUBSCRIBED"))',
        b'* LIST () "." t.b ("CHILDINFO" ("SUBSCRIBED"))',
        b'* LIST () "." t.c ("CHILDINFO" ("SUBSCRIBED"))',
        b'* LIST (\\NonExistent) "." t.gone ("CHILDINFO" ("SUBSCRIBED"))',
    }
    assert listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" t.a% RETURN (CHILDREN)') == {
        b'* LIST (\\HasChildren) "." t.a ("CHILDINFO" ("SUBSCRIBED"))',
    }
    # t.b.b is listed itself: t.b is not; t.c.d is not, so t.c is.
    assert listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" *b') == {b'* LIST (\\Subscribed) "." t.b.b'}
    assert listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" *c') == {
        b'* LIST () "." t.c ("CHILDINFO" ("SUBSCRIBED"))',
        b'* LIST (\\Subscribed) "." t.c.c',
    }
    assert listed('LIST (SUBSCRIBED RECURSIVEMATCH) "" (t.a t.a.x)') == {b'* LIST (\\Subscribed) "." t.a.x'}
    # Without RECURSIVEMATCH, only subscribed names.
    assert listed('LIST (SUBSCRIBED) "" t.%') == set()
    m.logout()
