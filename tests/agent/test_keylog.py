"""agent.keylog: NSS key log lines from files (followed as they grow) and from text; secrets never shown."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from agent.keylog import KeyLog, KeyLogError, check_readable

CR1, CR2 = bytes(range(32)), bytes(range(32, 64))
SECRET1, SECRET2 = bytes.fromhex("ab" * 48), bytes.fromhex("cd" * 32)


def line(label: str, cr: bytes, secret: bytes) -> str:
    return f"{label} {cr.hex()} {secret.hex()}\n"


class Clock:
    """Monotonic time the test moves by hand: the follow rate limit without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_comments_and_blank_lines_are_read() -> None:
    kl = KeyLog()
    kl.add_text("# written by curl\n\n" + line("CLIENT_RANDOM", CR1, SECRET1)
                + "  " + line("CLIENT_TRAFFIC_SECRET_0", CR2, SECRET2).upper())
    assert kl.secret(CR1, "CLIENT_RANDOM") == SECRET1
    assert kl.secret(CR2, "CLIENT_TRAFFIC_SECRET_0") == SECRET2
    assert kl.secret(CR2, "SERVER_TRAFFIC_SECRET_0") is None
    assert kl.secret(CR1, "CLIENT_TRAFFIC_SECRET_0") is None
    assert len(kl) == 2 and kl.bad_lines == 0


@pytest.mark.parametrize("bad", [
    "CLIENT_RANDOM 00 " + "ab" * 48,                        # client random not 32 bytes
    f"CLIENT_RANDOM {CR1.hex()} {'ab' * 48} extra",         # four fields
    f"CLIENT_RANDOM {CR1.hex()} {'zz' * 48}",               # not hex
    f"CLIENT_RANDOM {CR1.hex()} {'a' * 95}",                # odd number of hex digits
    f"CLIENT_RANDOM {CR1.hex()} {'ab' * 8}",                # far too short for any secret
    "CLIENT_RANDOM " + "x" * 5000,                          # a very long line
    "DROP TABLE secrets",
])
def test_a_bad_line_is_counted_and_never_echoed(bad: str, caplog: pytest.LogCaptureFixture) -> None:
    kl = KeyLog()
    with caplog.at_level(logging.WARNING):
        kl.add_line(bad)
    assert kl.bad_lines == 1 and len(kl) == 0
    for token in bad.split()[1:]:
        if len(token) >= 16:        # what could be a secret (short ones such as "00" occur anywhere)
            assert token not in caplog.text and token not in repr(kl)


def test_other_labels_are_counted_as_ignored_not_bad() -> None:
    kl = KeyLog()
    kl.add_line("RSA 0123456789abcdef " + "ab" * 48)
    kl.add_line(line("CLIENT_RANDOM", CR1, SECRET1))
    assert kl.ignored_lines == 1 and kl.bad_lines == 0 and len(kl) == 1


def test_repr_and_warnings_never_show_a_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys.log"
    path.write_text(line("CLIENT_RANDOM", CR1, SECRET1) + "CLIENT_RANDOM nothex " + SECRET2.hex() + "\n")
    with caplog.at_level(logging.DEBUG):
        kl = KeyLog([path])
    assert kl.bad_lines == 1
    text = repr(kl) + caplog.text
    assert SECRET1.hex() not in text and SECRET2.hex() not in text and "line 2" in caplog.text


def test_missing_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.log"
    with pytest.raises(KeyLogError) as e:
        KeyLog([path])
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    with pytest.raises(KeyLogError, match=r"nope\.log"):
        check_readable([path])


def test_unreadable_file_is_a_key_log_error(tmp_path: Path) -> None:
    # A directory where the key log should be: unreadable as a file for every user, root included (a mode
    # of 0 would not stop root, and CI runs as root).
    path = tmp_path / "keys.log"
    path.mkdir()
    with pytest.raises(KeyLogError, match=r"keys\.log: cannot read key log"):
        check_readable([path])


def test_a_file_growing_while_capturing_is_followed_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_text(line("CLIENT_RANDOM", CR1, SECRET1))
    clock = Clock()
    kl = KeyLog([path], clock=clock)
    with path.open("a") as f:
        f.write(line("CLIENT_HANDSHAKE_TRAFFIC_SECRET", CR2, SECRET2))
    clock.now += 0.1
    assert kl.secret(CR2, "CLIENT_HANDSHAKE_TRAFFIC_SECRET") is None     # within the interval: no re-read
    clock.now += 0.2
    assert kl.secret(CR2, "CLIENT_HANDSHAKE_TRAFFIC_SECRET") == SECRET2
    assert kl.secret(CR1, "CLIENT_RANDOM") == SECRET1


def test_a_partial_last_line_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_text("")
    clock = Clock()
    kl = KeyLog([path], clock=clock)
    full = line("CLIENT_TRAFFIC_SECRET_0", CR1, SECRET1)
    with path.open("a") as f:
        f.write(full[:-40])         # the writer is mid-line: a shorter secret that looks valid
    clock.now += 1
    assert kl.secret(CR1, "CLIENT_TRAFFIC_SECRET_0") is None
    with path.open("a") as f:
        f.write(full[-40:])
    clock.now += 1
    assert kl.secret(CR1, "CLIENT_TRAFFIC_SECRET_0") == SECRET1
    assert kl.bad_lines == 0


def test_a_last_line_never_finished_is_taken_after_a_quiet_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_text("")
    clock = Clock()
    kl = KeyLog([path], clock=clock)
    with path.open("a") as f:
        f.write(line("CLIENT_RANDOM", CR1, SECRET1).rstrip("\n"))
    for _ in range(3):
        clock.now += 1
        found = kl.secret(CR1, "CLIENT_RANDOM")
    assert found == SECRET1


def test_a_file_read_when_added_counts_its_unterminated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_text(line("CLIENT_RANDOM", CR1, SECRET1).rstrip("\n"))
    assert KeyLog([path]).secret(CR1, "CLIENT_RANDOM") == SECRET1


def test_truncation_and_rotation_restart_from_the_top_keeping_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_text(line("CLIENT_RANDOM", CR1, SECRET1) * 3)
    clock = Clock()
    kl = KeyLog([path], clock=clock)
    path.write_text(line("CLIENT_TRAFFIC_SECRET_0", CR2, SECRET2))    # truncated, shorter than before
    clock.now += 1
    assert kl.secret(CR2, "CLIENT_TRAFFIC_SECRET_0") == SECRET2
    rotated = tmp_path / "keys.log.new"
    rotated.write_text(line("SERVER_TRAFFIC_SECRET_0", CR2, SECRET2) + "\n" * 200)
    os.replace(rotated, path)                                          # a new file (inode) under the name
    clock.now += 1
    assert kl.secret(CR2, "SERVER_TRAFFIC_SECRET_0") == SECRET2
    assert kl.secret(CR1, "CLIENT_RANDOM") == SECRET1


def test_entries_are_bounded_oldest_first() -> None:
    kl = KeyLog(max_entries=3)
    for i in range(5):
        kl.add_line(line("CLIENT_RANDOM", bytes([i]) * 32, SECRET1))
    assert len(kl) == 3 and kl.evicted == 2
    assert kl.secret(bytes([0]) * 32, "CLIENT_RANDOM") is None
    assert kl.secret(bytes([4]) * 32, "CLIENT_RANDOM") == SECRET1


def test_an_endless_line_in_a_followed_file_is_dropped_not_held(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_bytes(b"A" * 100_000)
    kl = KeyLog([path])
    assert kl.bad_lines == 1 and len(kl) == 0


def test_a_long_file_is_read_whole_when_added(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.keylog
    monkeypatch.setattr(agent.keylog, "MAX_READ", 100)    # many reads of a file of 50 lines
    path = tmp_path / "keys.log"
    path.write_text("".join(line("CLIENT_RANDOM", bytes([i]) * 32, SECRET1) for i in range(50)))
    kl = KeyLog([path], clock=Clock())
    assert len(kl) == 50 and kl.bad_lines == 0


def test_internal_state_never_shows_a_partial_secret(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    path.write_text(line("CLIENT_RANDOM", CR1, SECRET1).rstrip("\n"))
    kl = KeyLog([path])
    assert SECRET1.hex() not in repr(kl) + repr(kl._files)
