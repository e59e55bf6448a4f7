"""agent.protocols.tls_decrypt: real TLS 1.2 / 1.3 connections (made in memory, tests/agent/tls_streams.py)
opened with their logged secrets; exactly the application data sent comes out, whatever the segmentation;
wrong, partial, late or missing secrets and broken streams are counted, never a crash, never garbage."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.anomalies import AnomalySink
from agent.keylog import KeyLog
from agent.protocols.tls_decrypt import TlsDecryptor
from tests.agent.tls_streams import Pair, Stream, openssl_pair, python_pair, segments, zero_rtt_stream

REQUEST = b"POST /v1/upload HTTP/1.1\r\nHost: export.example\r\nContent-Length: 40000\r\n\r\n" + bytes(
    (i * 7) % 251 for i in range(40_000))       # several records, not a multiple of the record size
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
SECOND = b"GET /v1/status HTTP/1.1\r\nHost: export.example\r\n\r\n"


def _talk(pair: Pair) -> Stream:
    pair.handshake()
    pair.send(REQUEST, True)
    pair.send(RESPONSE, False)
    pair.send(SECOND, True)
    return pair.finish()


def _keyupdates(pair: Pair) -> Stream:
    pair.handshake()
    pair.send(b"before any update", True)
    pair.key_update(True, request_peer=True)    # the client updates and asks the server to update too
    pair.send(b"after the client's update", True)
    pair.send(b"server after its requested update", False)
    pair.key_update(False, request_peer=False)  # and the server once more on its own
    pair.send(b"server after a second update", False)
    pair.send(b"client, still on its first update", True)
    return pair.finish()


def _tls12(cipher: str, ecdsa: bool = False) -> Callable[[Path], Stream]:
    return lambda d: _talk(python_pair(d, tls12_cipher=cipher, ecdsa=ecdsa))


def _tls13(suite: str) -> Callable[[Path], Stream]:
    return lambda d: _talk(openssl_pair(d, suite))


KINDS: dict[str, tuple[Callable[[Path], Stream], int, int]] = {
    # name: (maker, version, suite)
    "tls13_aes256gcm": (lambda d: _talk(python_pair(d)), 0x0304, 0x1302),
    "tls13_aes128gcm": (_tls13("TLS_AES_128_GCM_SHA256"), 0x0304, 0x1301),
    "tls13_chacha20": (_tls13("TLS_CHACHA20_POLY1305_SHA256"), 0x0304, 0x1303),
    # The server wants a key share the client did not send: HelloRetryRequest, a second ClientHello.
    "tls13_hello_retry": (lambda d: _talk(python_pair(d, server_curve="secp384r1")), 0x0304, 0x1302),
    "tls12_ecdhe_rsa_aes128gcm": (_tls12("ECDHE-RSA-AES128-GCM-SHA256"), 0x0303, 0xC02F),
    "tls12_ecdhe_ecdsa_aes256gcm": (_tls12("ECDHE-ECDSA-AES256-GCM-SHA384", ecdsa=True), 0x0303, 0xC02C),
    "tls12_ecdhe_rsa_chacha20": (_tls12("ECDHE-RSA-CHACHA20-POLY1305"), 0x0303, 0xCCA8),
    "tls12_rsa_aes128gcm": (_tls12("AES128-GCM-SHA256"), 0x0303, 0x009C),
}


@functools.cache
def stream(kind: str) -> Stream:
    """One connection per kind for the whole module (a handshake with a fresh RSA key costs ~0.1 s)."""
    makers = {**{k: v[0] for k, v in KINDS.items()},
              "keyupdate": lambda d: _keyupdates(python_pair(d)),
              "tls13_ccm": _tls13("TLS_AES_128_CCM_SHA256"), "tls12_cbc": _tls12("ECDHE-RSA-AES128-SHA")}
    with tempfile.TemporaryDirectory() as folder:
        return makers[kind](Path(folder))


class Run:
    """A decryptor over a stream, collecting what it hands on per direction."""

    def __init__(self, keys: str | KeyLog, *, strict: bool = True, **kw: int) -> None:
        self.keylog = keys if isinstance(keys, KeyLog) else KeyLog()
        if isinstance(keys, str):
            self.keylog.add_text(keys)
        self.anomalies = AnomalySink(strict=strict)
        self.got = {True: bytearray(), False: bytearray()}
        self.dec = TlsDecryptor(self.keylog, flow_id="f1", anomalies=self.anomalies,
                                on_plaintext=lambda data, c: self.got[c].extend(data), **kw)

    def feed(self, chunks: list[tuple[bool, bytes]], close: bool = True) -> Run:
        for from_client, chunk in chunks:
            self.dec.feed(chunk, from_client)
        if close:
            self.dec.close()
        return self


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_suite_gives_back_exactly_what_each_side_sent(kind: str) -> None:
    s = stream(kind)
    run = Run(s.keylog).feed(s.order)
    dec = run.dec
    assert bytes(run.got[True]) == s.client_sent == REQUEST + SECOND
    assert bytes(run.got[False]) == s.server_sent == RESPONSE
    assert dec.decrypted and dec.reason is None
    assert (dec.version, dec.cipher_suite) == KINDS[kind][1:]
    assert dec.alpn == "h2"                                   # negotiated, not merely the first offered
    assert dec.client_hello is not None and dec.client_hello.sni == "export.example"
    assert dec.client_hello.alpn == ("h2", "http/1.1")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(KINDS)), cuts=st.lists(st.integers(0, 60_000), max_size=40),
       one_side_first=st.booleans())
def test_any_segmentation_gives_the_same_plaintext(kind: str, cuts: list[int], one_side_first: bool) -> None:
    s = stream(kind)
    if one_side_first:
        # All of the client's bytes before any of the server's: its records wait for the ServerHello.
        order = [(True, p) for p in segments(s.client_bytes, cuts)] + \
                [(False, p) for p in segments(s.server_bytes, cuts)]
    else:
        order = [(c, p) for c, chunk in s.order
                 for p in segments(chunk, [x % (len(chunk) + 1) for x in cuts])]
    run = Run(s.keylog).feed(order)
    assert bytes(run.got[True]) == s.client_sent and bytes(run.got[False]) == s.server_sent


def test_key_updates_in_both_directions_are_followed() -> None:
    s = stream("keyupdate")
    run = Run(s.keylog).feed(s.order)
    assert bytes(run.got[True]) == s.client_sent and bytes(run.got[False]) == s.server_sent
    assert run.dec.key_updates == 3 and run.dec.reason is None


EARLY = b"POST /0rtt HTTP/1.1\r\nHost: export.example\r\nContent-Length: 9\r\n\r\n0-RTT body"
LATER = b"GET /after-the-handshake HTTP/1.1\r\n\r\n"


@functools.cache
def zero_rtt() -> Stream:
    with tempfile.TemporaryDirectory() as folder:
        return zero_rtt_stream(Path(folder), EARLY, LATER)


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")


@needs_openssl
def test_0rtt_early_data_is_opened_with_its_logged_secret_on_a_resumed_connection() -> None:
    s = zero_rtt()
    assert "CLIENT_EARLY_TRAFFIC_SECRET" in s.keylog
    run = Run(s.keylog).feed(s.order)
    assert bytes(run.got[True]) == EARLY + LATER and run.dec.early_skipped == 0
    assert run.dec.decrypted and run.dec.reason is None


@needs_openssl
def test_0rtt_without_its_secret_skips_the_early_records_and_opens_the_rest() -> None:
    s = zero_rtt()
    keys = "\n".join(ln for ln in _lines(s.keylog) if not ln.startswith("CLIENT_EARLY_TRAFFIC_SECRET"))
    run = Run(keys).feed(s.order)
    assert bytes(run.got[True]) == LATER
    assert run.dec.early_skipped == 2            # the early data and the EndOfEarlyData record
    assert run.dec.reason is None and not run.anomalies.records


@needs_openssl
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_0rtt_any_segmentation(cuts: list[int]) -> None:
    s = zero_rtt()
    order = [(True, p) for p in segments(s.client_bytes, cuts)] + \
            [(False, p) for p in segments(s.server_bytes, cuts)]
    assert bytes(Run(s.keylog).feed(order).got[True]) == EARLY + LATER


@pytest.mark.parametrize("kind", ["tls13_ccm", "tls12_cbc"])
def test_a_suite_without_aead_support_is_unsupported_cipher(kind: str) -> None:
    s = stream(kind)
    run = Run(s.keylog).feed(s.order)
    assert run.dec.reason == "unsupported_cipher" and not run.dec.decrypted
    assert not run.got[True] and not run.got[False] and not run.anomalies.records


def _lines(keylog: str) -> list[str]:
    return [ln for ln in keylog.splitlines() if ln and not ln.startswith("#")]


def _flip_secrets(keylog: str) -> str:
    """Same client randoms and labels, other secrets: a key log that names this connection wrongly."""
    out = []
    for line in _lines(keylog):
        label, cr, secret = line.split()
        out.append(f"{label} {cr} {bytes(b ^ 0x5A for b in bytes.fromhex(secret)).hex()}")
    return "\n".join(out)


@pytest.mark.parametrize("kind", ["tls13_aes256gcm", "tls12_ecdhe_rsa_aes128gcm"])
def test_wrong_secrets_are_decrypt_failed_anomalies_without_any_plaintext(kind: str) -> None:
    s = stream(kind)
    wrong = _flip_secrets(s.keylog)
    run = Run(wrong, strict=False).feed(s.order)
    assert run.dec.reason == "decrypt_failed" and not run.dec.decrypted
    assert not run.got[True] and not run.got[False]
    names = {(a.layer, a.name) for a in run.anomalies.records}
    assert names == {("tls", "decrypt_failed")}
    for a in run.anomalies.records:
        assert a.flow_id == "f1"
        for secret in (ln.split()[2] for ln in _lines(wrong) + _lines(s.keylog)):
            assert secret not in a.detail


def test_a_key_log_of_another_connection_is_no_secrets_and_no_anomaly() -> None:
    run = Run(stream("tls12_ecdhe_rsa_chacha20").keylog).feed(stream("tls13_chacha20").order)
    assert run.dec.reason == "no_secrets" and not run.dec.decrypted and not run.anomalies.records


def test_only_handshake_secrets_give_the_alpn_and_then_no_secrets() -> None:
    s = stream("tls13_aes128gcm")
    partial = "\n".join(ln for ln in _lines(s.keylog) if "HANDSHAKE" in ln)
    run = Run(partial).feed(s.order)
    assert run.dec.alpn == "h2" and run.dec.reason == "no_secrets" and not run.dec.decrypted
    assert not run.got[True] and not run.got[False]


def test_secrets_logged_after_the_records_arrive_open_the_held_ciphertext(tmp_path: Path) -> None:
    s = stream("tls13_chacha20")
    path = tmp_path / "keys.log"
    path.write_text("")
    now = [0.0]
    keylog = KeyLog([path], clock=lambda: now[0])
    run = Run(keylog).feed(s.order, close=False)
    assert not run.dec.decrypted and run.dec.reason is None        # held, not given up
    path.write_text(s.keylog)                                      # the client's key log catches up
    now[0] += 1.0
    run.dec.retry()
    run.dec.close()
    assert bytes(run.got[True]) == s.client_sent and bytes(run.got[False]) == s.server_sent


def test_a_live_wait_for_keys_that_runs_out_is_no_secrets() -> None:
    s = stream("tls12_ecdhe_rsa_chacha20")
    run = Run("").feed(s.order, close=False)
    assert run.dec.waiting and run.dec.reason is None
    run.dec.expire()                            # the pipeline's tls.key_wait_s ran out
    assert not run.dec.waiting and run.dec.reason == "no_secrets"
    run.keylog.add_text(s.keylog)               # too late: nothing held, nothing read any more
    run.dec.retry()
    run.dec.feed(s.client_bytes[-100:], True)
    run.dec.close()
    assert not run.got[True] and not run.got[False]


def test_a_finished_connection_is_not_waiting() -> None:
    s = stream("tls13_aes256gcm")
    run = Run(s.keylog).feed(s.order, close=False)
    assert not run.dec.waiting
    run.dec.expire()
    assert run.dec.reason is None


def test_held_ciphertext_past_the_budget_is_no_secrets_and_dropped() -> None:
    s = stream("tls13_aes256gcm")
    run = Run("", key_wait_bytes=1000).feed(s.order, close=False)
    assert run.dec.reason == "no_secrets"
    run.dec.feed(b"\x17\x03\x03\x00\x20" + bytes(32), True)       # nothing more is held
    run.dec.retry()
    run.dec.close()
    assert not run.got[True] and not run.got[False]


@pytest.mark.parametrize("kind", ["tls13_aes256gcm", "tls12_ecdhe_rsa_aes128gcm"])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_handshake_cut_short_is_never_a_crash(kind: str, where: float) -> None:
    s = stream(kind)
    client_hello_len = len(s.order[0][1])
    order = [(True, s.order[0][1][:int(client_hello_len * where)])] if where < 0.5 else \
        [s.order[0], (False, s.order[1][1][:int(len(s.order[1][1]) * where)])]
    run = Run(s.keylog).feed(order)
    assert not run.dec.decrypted and not run.got[True] and not run.got[False]


def test_a_corrupted_record_is_an_anomaly_and_ends_that_direction_only() -> None:
    s = stream("tls13_aes256gcm")
    client = bytearray(s.client_bytes)
    client[-20] ^= 0x01        # inside the last record the client sent (SECOND, ~70 bytes)
    run = Run(s.keylog, strict=False).feed([(True, bytes(client)), (False, s.server_bytes)])
    assert [(a.layer, a.name) for a in run.anomalies.records] == [("tls", "decrypt_failed")]
    assert run.dec.reason == "decrypt_failed" and run.dec.decrypted
    assert bytes(run.got[True]) == REQUEST                 # what came before the bad record, nothing after
    assert bytes(run.got[False]) == RESPONSE


def test_a_capture_gap_ends_the_direction_with_capture_gap() -> None:
    s = stream("tls12_ecdhe_rsa_aes128gcm")
    run = Run(s.keylog)
    run.dec.feed(s.client_bytes[:-len(SECOND) - 100], True)
    run.dec.gap(100, True)
    run.dec.feed(s.server_bytes, False)
    run.dec.close()
    assert run.dec.reason == "capture_gap"
    assert bytes(run.got[False]) == RESPONSE and REQUEST.startswith(bytes(run.got[True]))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=10), client=st.booleans())
def test_random_bytes_never_raise(data: bytes, cuts: list[int], client: bool) -> None:
    run = Run(stream("tls13_aes256gcm").keylog, strict=False)
    for piece in segments(data, cuts):
        run.dec.feed(piece, client)
        run.dec.feed(piece[::-1], not client)
    run.dec.retry()
    run.dec.close()
    assert not run.got[True] and not run.got[False]
    assert all(a.name != "internal_error" for a in run.anomalies.records)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["tls13_aes128gcm", "tls12_ecdhe_rsa_chacha20"]), pos=st.floats(0, 1),
       value=st.integers(1, 255), client=st.booleans())
def test_a_damaged_stream_hands_on_only_a_prefix_of_the_truth(kind: str, pos: float, value: int,
                                                               client: bool) -> None:
    s = stream(kind)
    damaged = bytearray(s.client_bytes if client else s.server_bytes)
    damaged[int(pos * (len(damaged) - 1))] ^= value
    other = s.server_bytes if client else s.client_bytes
    run = Run(s.keylog, strict=False).feed([(client, bytes(damaged)), (not client, other)])
    assert s.client_sent.startswith(bytes(run.got[True])) and s.server_sent.startswith(bytes(run.got[False]))
    assert all(a.name != "internal_error" for a in run.anomalies.records)
