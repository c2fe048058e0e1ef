"""The APOP secret box: its key is checked when the server starts, the cipher is
made at the first secret sealed or opened."""

import pytest

from hatoba.store.secretbox import SecretBox, SecretBoxError


def test_a_sealed_secret_opens_with_the_same_key_file(tmp_path):
    key = tmp_path / "secrets.key"
    sealed = SecretBox(key).seal("apop-secret")
    assert "apop-secret" not in sealed
    assert SecretBox(key).open(sealed) == "apop-secret"
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_a_key_file_that_is_no_key_is_refused_at_start(tmp_path):
    key = tmp_path / "secrets.key"
    key.write_text("!" * 44 + "\n")  # the right length, not base64 of 32 bytes
    with pytest.raises(SecretBoxError, match="not a secrets key"):
        SecretBox(key)
