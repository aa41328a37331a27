"""Host-key policy: known, unknown, changed, accept-new, hashed entries, keys a cluster published."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from runner.remote.hostkeys import HostKeyError, HostKeyPolicy, known_hosts_name, parse_public_keys

NAME = "[10.0.0.5]:2222"


def _key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def _line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def test_known_hosts_names_follow_openssh() -> None:
    assert known_hosts_name("master", 22) == "master"
    assert known_hosts_name("10.0.0.5", 2222) == NAME


def test_a_known_key_is_trusted(tmp_path: Path) -> None:
    key = _key()
    known = tmp_path / "known_hosts"
    known.write_text("# comment\n\n" + _line("other", _key()) + _line(f"alias,{NAME}", key))

    assert "found in known hosts" in HostKeyPolicy((known,)).verify(NAME, "m", key)


def test_a_hashed_entry_is_trusted(tmp_path: Path) -> None:
    key = _key()
    known = tmp_path / "known_hosts"
    known.write_text(_line(paramiko.HostKeys.hash_host(NAME), key))

    HostKeyPolicy((known,)).verify(NAME, "m", key)


def test_an_unknown_key_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"

    with pytest.raises(
        HostKeyError, match=r"is not known \(ecdsa-sha2-nistp256 SHA256:.*--accept-new-host-key"
    ):
        HostKeyPolicy((known,)).verify(NAME, "m", _key())
    assert not known.exists()


def test_accept_new_records_a_first_key_once(tmp_path: Path) -> None:
    key = _key()
    known = tmp_path / ".ssh" / "known_hosts"
    policy = HostKeyPolicy((known,), accept_new=True)

    policy.verify(NAME, "m", key)
    policy.verify(NAME, "m", key)

    assert known.read_text() == _line(NAME, key)
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"


def test_a_changed_key_is_refused_even_with_accept_new(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(_line(NAME, _key()))

    with pytest.raises(HostKeyError, match="has CHANGED"):
        HostKeyPolicy((known,), accept_new=True).verify(NAME, "m", _key())


def test_a_pinned_key_wins_over_known_hosts_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    pinned, stale = _key(), _key()
    known = tmp_path / "known_hosts"
    known.write_text(_line(NAME, stale))  # an earlier cluster that had the same address
    policy = HostKeyPolicy((known,))

    assert "matches SSM" in policy.verify(NAME, "m", pinned, pinned=[pinned], pinned_source="SSM parameter x")
    with pytest.raises(HostKeyError, match="is not the one SSM parameter x holds"):
        policy.verify(NAME, "m", stale, pinned=[pinned], pinned_source="SSM parameter x")


def test_a_revoked_key_is_refused_even_with_accept_new_and_never_recorded(tmp_path: Path) -> None:
    key = _key()
    known = tmp_path / "known_hosts"
    known.write_text("@revoked " + _line(NAME, key))

    with pytest.raises(HostKeyError, match=rf"is REVOKED \({known}:1 marks it @revoked\)"):
        HostKeyPolicy((known,), accept_new=True).verify(NAME, "m", key)
    assert known.read_text() == "@revoked " + _line(NAME, key)


def test_revocation_wins_over_a_known_line_and_a_published_key(tmp_path: Path) -> None:
    key = _key()
    known = tmp_path / "known_hosts"
    known.write_text(_line(NAME, key) + "@revoked\t" + _line("*", key))
    policy = HostKeyPolicy((known,))

    with pytest.raises(HostKeyError, match="REVOKED"):
        policy.verify(NAME, "m", key)
    with pytest.raises(HostKeyError, match="REVOKED"):
        policy.verify(NAME, "m", key, pinned=[key], pinned_source="SSM parameter x")


def test_a_key_revoked_for_other_hosts_only_is_still_trusted(tmp_path: Path) -> None:
    key = _key()
    known = tmp_path / "known_hosts"
    known.write_text("@revoked " + _line("other-host", key) + _line(NAME, key))

    assert "found in known hosts" in HostKeyPolicy((known,)).verify(NAME, "m", key)


def test_published_keys_are_parsed_one_per_line() -> None:
    a, b = _key(), _key()
    text = (
        f"{a.get_name()} {a.get_base64()}\n\n# note\nnot a key\n{b.get_name()} {b.get_base64()} root@master\n"
    )

    keys = parse_public_keys(text)

    assert [key.asbytes() for key in keys] == [a.asbytes(), b.asbytes()]


def test_known_key_types_are_asked_for_first(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(_line(NAME, _key()))
    assert HostKeyPolicy((known,)).preferred_algorithms(NAME, None) == ["ecdsa-sha2-nistp256"]
