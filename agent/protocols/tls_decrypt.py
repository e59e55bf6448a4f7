"""Decrypt one TLS connection with logged secrets; hand its application data on as plaintext.

`TlsDecryptor` reads both directions' reassembled TCP bytes as records (RFC 8446 §5, RFC 5246 §6.2),
learns the client random from the ClientHello and the version, server random and suite from the
ServerHello, looks the secrets up in a `KeyLog` (agent/keylog.py) and opens the records:

- TLS 1.3: handshake traffic secrets (EncryptedExtensions gives the negotiated ALPN; the client's Finished is
  skipped), then application traffic secrets, ratcheted at each KeyUpdate of that direction (§4.6.3); 0-RTT
  early data under CLIENT_EARLY_TRAFFIC_SECRET when it is logged, else the early records are skipped and
  counted (`early_skipped`) by trying the handshake key; inner content type and padding stripped (§5.4).
- TLS 1.2: CLIENT_RANDOM master secret, key block, AEAD suites; records after each side's ChangeCipherSpec.

Only application_data reaches `on_plaintext(data, from_client)`, per direction in order. A record whose tag
does not verify is an anomaly (tls/decrypt_failed; the detail names the direction and record number, never
a byte of it) and ends that direction. Outcome: `.decrypted`, and `.reason` (no_secrets, unsupported_cipher,
decrypt_failed, capture_gap) when it could not. Keys not logged yet: the ciphertext is held, up to
`key_wait_bytes` for both directions, and the key log asked again as data comes and at each `retry()`.
Nothing raises out of feed / gap / retry / close: the input is the network's, and bounded (record lengths,
held bytes, handshake bodies).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Final, Protocol

from agent.anomalies import AnomalyError, AnomalySink
from agent.protocols import tls_handshake as hs
from agent.protocols.tls import ClientHello
from agent.protocols.tls_keys import (
    RecordCipher,
    Suite,
    next_traffic_secret,
    suite,
    tls12_ciphers,
    tls13_cipher,
)

log = logging.getLogger(__name__)

CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA = 20, 21, 22, 23
_HEADER: Final = struct.Struct("!BBBH")
MAX_PLAIN_RECORD: Final = 2**14 + 2048      # RFC 5246 §6.2.3 TLSCiphertext bound (plaintext ones are 2^14)
MAX_TLS13_RECORD: Final = 2**14 + 256       # RFC 8446 §5.2
TLS12, TLS13 = 0x0303, 0x0304

# Epochs of one direction.
PLAIN, EARLY, HANDSHAKE, APP, TLS12_ENC = "plain", "early", "handshake", "app", "tls12"
_LABELS: Final = {
    (EARLY, True): "CLIENT_EARLY_TRAFFIC_SECRET",
    (HANDSHAKE, True): "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    (HANDSHAKE, False): "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    (APP, True): "CLIENT_TRAFFIC_SECRET_0", (APP, False): "SERVER_TRAFFIC_SECRET_0",
}
_WANTED: Final = {
    (PLAIN, True): frozenset({hs.HS_CLIENT_HELLO}), (PLAIN, False): frozenset({hs.HS_SERVER_HELLO}),
    (HANDSHAKE, False): frozenset({hs.HS_ENCRYPTED_EXTENSIONS}),
}


class SecretSource(Protocol):
    def secret(self, client_random: bytes, label: str) -> bytes | None: ...


class _Direction:
    __slots__ = ("app_secret", "buf", "cipher", "client", "done", "epoch", "hs", "records")

    def __init__(self, client: bool) -> None:
        self.client = client
        self.buf = bytearray()          # bytes not yet consumed: at most one partial record unless held
        self.epoch = PLAIN
        self.hs = hs.HandshakeStream(_WANTED[(PLAIN, client)])
        self.cipher: RecordCipher | None = None
        self.app_secret: bytes | None = None    # TLS 1.3: the current application traffic secret
        self.done = False               # nothing more is read in this direction
        self.records = 0                # records read, for anomaly details

    def enter(self, epoch: str) -> None:
        self.epoch = epoch
        self.cipher = None
        self.hs = hs.HandshakeStream(_WANTED.get((epoch, self.client), frozenset()))


class TlsDecryptor:
    def __init__(self, keylog: SecretSource, *, flow_id: str | None, anomalies: AnomalySink,
                 on_plaintext: Callable[[bytes, bool], None], key_wait_bytes: int = 1 << 20) -> None:
        self._keylog = keylog
        self._flow_id = flow_id
        self._anomalies = anomalies
        self._emit = on_plaintext
        self._budget = key_wait_bytes
        self.decrypted = False
        self.opened = False             # a record under application keys opened (an alert, a ticket, data)
        self.reason: str | None = None
        self.version: int | None = None
        self.cipher_suite: int | None = None
        self.alpn: str | None = None
        self.client_hello: ClientHello | None = None
        self.early_skipped = 0          # 0-RTT records passed over for want of their secret
        self.plaintext_bytes = 0
        self.key_updates = 0            # TLS 1.3 KeyUpdates followed, both directions
        self._random: bytes | None = None
        self._server_random: bytes | None = None
        self._suite: Suite | None = None
        self._offers_early = False
        self._c = _Direction(True)
        self._s = _Direction(False)
        self._stopped = False           # gave up: nothing more is read at all
        self._tls12: tuple[RecordCipher, RecordCipher] | None = None

    def __repr__(self) -> str:
        return (f"TlsDecryptor(version={self.version!r}, suite={self.cipher_suite!r}, "
                f"decrypted={self.decrypted}, reason={self.reason!r})")

    # --- the handler interface ----------------------------------------------------------------------

    def feed(self, data: bytes, from_client: bool) -> None:
        d = self._c if from_client else self._s
        if self._stopped or d.done or not data:
            return
        d.buf += data
        self._guarded(self._pump)

    def gap(self, n: int, from_client: bool) -> None:
        """`n` bytes of this direction were not captured: its record boundaries and sequence are lost."""
        d = self._c if from_client else self._s
        if self._stopped or d.done:
            return
        self._end(d)
        self._set_reason("capture_gap")

    def retry(self) -> None:
        """Ask the key log again for held records (a live pipeline calls this while it waits)."""
        if not self._stopped:
            self._guarded(self._pump)

    def reading(self, from_client: bool) -> bool:
        """Whether that direction's bytes are still read (not after a hole, a failed tag or giving up)."""
        return not self._stopped and not (self._c if from_client else self._s).done

    @property
    def waiting(self) -> bool:
        """Whole records are held for a secret (or a ServerHello) not seen yet: a live pipeline times this
        against `tls.key_wait_s` and calls `expire()` when it runs out."""
        return not self._stopped and any(_whole_record(d.buf) for d in (self._c, self._s) if not d.done)

    def expire(self) -> None:
        """The wait for keys is over (`tls.key_wait_s`): held records count as no_secrets and are dropped,
        and nothing more of this connection is read."""
        if self.waiting:
            self._give_up("no_secrets")

    def close(self) -> None:
        """The connection ended: records still held for want of keys count as no_secrets."""
        if self._stopped:
            return
        self._guarded(self._pump)
        self.expire()
        self._stopped = True
        self._c.buf.clear()
        self._s.buf.clear()

    # --- machinery ------------------------------------------------------------------------------------

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except AnomalyError:
            raise                       # a strict sink (tests) wants to see it
        except Exception as e:  # the last guard: hostile input must never end the capture
            log.debug("tls decryptor stopped on %s", type(e).__name__)
            self._anomalies.add("tls", "internal_error", type(e).__name__, self._flow_id)
            self._give_up("decrypt_failed")

    def _set_reason(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def _give_up(self, reason: str) -> None:
        self._set_reason(reason)
        self._stopped = True
        for d in (self._c, self._s):
            d.done = True
            d.buf.clear()

    def _end(self, d: _Direction) -> None:
        d.done = True
        d.buf.clear()

    def _pump(self) -> None:
        # The server first: the client's records mean nothing before the ServerHello is known.
        while not self._stopped and (self._run(self._s) | self._run(self._c)):
            pass
        if self._stopped:
            return
        held = len(self._c.buf) + len(self._s.buf)
        if held > self._budget + 2 * (MAX_PLAIN_RECORD + 5):
            self._give_up("no_secrets")

    def _run(self, d: _Direction) -> bool:
        """Consume whole records of `d` until one must wait; True if any was consumed."""
        progress = False
        while not d.done and not self._stopped and len(d.buf) >= 5:
            ctype, major, _minor, length = _HEADER.unpack_from(d.buf)
            limit = MAX_TLS13_RECORD if d.epoch in (EARLY, HANDSHAKE, APP) else MAX_PLAIN_RECORD
            if major != 3 or not CT_CCS <= ctype <= CT_APPDATA or length > limit:
                self._bad(d, f"record header (type {ctype}, length {length})")
                return progress
            if len(d.buf) < 5 + length:
                break
            header, payload = bytes(d.buf[:5]), bytes(d.buf[5:5 + length])
            if not self._record(d, ctype, header, payload):
                break
            d.records += 1
            del d.buf[:5 + length]
            progress = True
        return progress

    def _record(self, d: _Direction, ctype: int, header: bytes, payload: bytes) -> bool:
        """Handle one record; False when it must wait (the ServerHello or a secret is not known yet)."""
        if d.epoch == PLAIN:
            if ctype == CT_HANDSHAKE:
                for t, body in d.hs.feed(payload):
                    self._plain_message(d, t, body)
                return True
            if ctype == CT_ALERT:
                return True
            if ctype == CT_CCS and self.version == TLS13:
                return True             # RFC 8446 D.4 middlebox compatibility (also after an HRR)
            if self._suite is None:
                return False            # CCS or encrypted data: meaningless until the ServerHello is read
                                        # (the real one: a HelloRetryRequest fixes no keys)
            if self.version == TLS12:
                if ctype == CT_CCS:
                    d.enter(TLS12_ENC)
                else:
                    self._bad(d, "application data before ChangeCipherSpec")
                return True
            d.enter(EARLY if d.client and self._offers_early else HANDSHAKE)
        if d.epoch == TLS12_ENC:
            return self._tls12_record(d, ctype, header, payload)
        if ctype != CT_APPDATA:
            return True                 # compatibility CCS, or a plaintext alert: nothing to open
        if d.epoch == EARLY:
            return self._early_record(d, header, payload)
        if d.cipher is None and not self._load_key(d):
            return False
        assert d.cipher is not None
        plain = d.cipher.open(header, payload)
        if plain is None:
            self._failed(d)
            return True
        self._inner(d, plain)
        return True

    def _plain_message(self, d: _Direction, t: int, body: bytes | None) -> None:
        if body is None:
            return
        if d.client and t == hs.HS_CLIENT_HELLO and self._random is None:
            info = hs.parse_client_hello_body(body)
            if info is None:
                self._bad(d, "ClientHello")
                return
            self._random, self._offers_early = info.random, info.offers_early_data
            self.client_hello = info.hello
        elif not d.client and t == hs.HS_SERVER_HELLO:
            sh = hs.parse_server_hello(body)
            if sh is None:
                self._bad(d, "ServerHello")
                return
            self.version, self.cipher_suite = sh.version, sh.cipher_suite
            if sh.retry:
                return                  # HelloRetryRequest: the real ServerHello comes next
            self._server_random, self.alpn = sh.random, sh.alpn
            self._suite = suite(sh.cipher_suite, sh.version) if sh.version in (TLS12, TLS13) else None
            if self._suite is None:
                self._give_up("unsupported_cipher")

    def _secret(self, label: str) -> bytes | None:
        return self._keylog.secret(self._random, label) if self._random is not None else None

    def _load_key(self, d: _Direction) -> bool:
        assert self._suite is not None
        secret = self._secret(_LABELS[(d.epoch, d.client)])
        if secret is None or len(secret) != self._suite.hash_len:
            return False
        if d.epoch == APP:
            d.app_secret = secret
        d.cipher = tls13_cipher(self._suite, secret)
        return True

    def _early_record(self, d: _Direction, header: bytes, payload: bytes) -> bool:
        """0-RTT: early data under its own key, or, once the handshake key opens a record, the handshake."""
        assert self._suite is not None
        if d.cipher is None:
            self._load_key(d)
        if d.cipher is not None:
            plain = d.cipher.open(header, payload)
            if plain is not None:
                self._inner(d, plain)
                return True
        hs_secret = self._secret(_LABELS[(HANDSHAKE, True)])
        if hs_secret is None or len(hs_secret) != self._suite.hash_len:
            return False
        trial = tls13_cipher(self._suite, hs_secret)
        plain = trial.open(header, payload)
        if plain is None:
            if d.cipher is not None:
                self._failed(d)         # neither the early nor the handshake key: not these secrets
            else:
                self.early_skipped += 1
            return True
        d.enter(HANDSHAKE)
        d.cipher = trial
        self._inner(d, plain)
        return True

    def _inner(self, d: _Direction, plain: bytes) -> None:
        """A TLS 1.3 TLSInnerPlaintext: content, then the real type, then zero padding (§5.4)."""
        stripped = plain.rstrip(b"\x00")
        if not stripped:
            self._bad(d, "inner plaintext without a content type")
            return
        self._content(d, stripped[-1], stripped[:-1])

    def _content(self, d: _Direction, ctype: int, content: bytes) -> None:
        if d.epoch in (APP, EARLY, TLS12_ENC):
            self.opened = True          # the application keys work, whether or not data follows
        if ctype == CT_APPDATA:
            if d.epoch in (APP, EARLY, TLS12_ENC) and content:
                self.decrypted = True
                self.plaintext_bytes += len(content)
                self._emit(content, d.client)
        elif ctype == CT_HANDSHAKE:
            key_change = None
            for t, body in d.hs.feed(content):
                key_change = self._message(d, t, body) or key_change
            if key_change is not None:
                self._switch(d, key_change)
        elif ctype == CT_ALERT and len(content) >= 2 and (content[1] == 0 or content[0] == 2):
            d.done = True   # close_notify (0) or a fatal alert ends what this side sends; warnings do not

    def _message(self, d: _Direction, t: int, body: bytes | None) -> str | None:
        """A decrypted handshake message; returns the epoch to switch to after this record, if any."""
        if d.epoch == HANDSHAKE:
            if t == hs.HS_ENCRYPTED_EXTENSIONS and body is not None:
                self.alpn = hs.parse_encrypted_extensions_alpn(body) or self.alpn
            elif t == hs.HS_FINISHED:
                return APP
        elif d.epoch == EARLY and t == hs.HS_END_OF_EARLY_DATA:
            return HANDSHAKE
        elif d.epoch == APP and t == hs.HS_KEY_UPDATE:
            return "update"
        return None

    def _switch(self, d: _Direction, to: str) -> None:
        if to == "update":
            assert self._suite is not None and d.app_secret is not None
            d.app_secret = next_traffic_secret(self._suite, d.app_secret)
            self.key_updates += 1
            d.cipher = tls13_cipher(self._suite, d.app_secret)
            d.hs = hs.HandshakeStream()
        else:
            d.enter(to)

    def _tls12_record(self, d: _Direction, ctype: int, header: bytes, payload: bytes) -> bool:
        if self._tls12 is None:
            master = self._secret("CLIENT_RANDOM")
            if master is None or len(master) != 48 or self._server_random is None:
                return False
            assert self._suite is not None and self._random is not None
            self._tls12 = tls12_ciphers(self._suite, master, self._random, self._server_random)
        cipher = self._tls12[0] if d.client else self._tls12[1]
        plain = cipher.open(header, payload)
        if plain is None:
            self._failed(d)
        elif ctype == CT_CCS:
            # A second ChangeCipherSpec is a renegotiation under keys no key log line names.
            self._anomalies.add("tls", "renegotiation", f"{_side(d)} record {d.records + 1}", self._flow_id)
            self._end(d)
        else:
            self._content(d, ctype, plain)
        return True

    def _failed(self, d: _Direction) -> None:
        self._anomalies.add("tls", "decrypt_failed", f"{_side(d)} record {d.records + 1}: tag mismatch",
                            self._flow_id)
        self._set_reason("decrypt_failed")
        self._end(d)

    def _bad(self, d: _Direction, what: str) -> None:
        self._anomalies.add("tls", "bad_record", f"{_side(d)} record {d.records + 1}: {what}", self._flow_id)
        self._set_reason("decrypt_failed")
        self._end(d)


def _side(d: _Direction) -> str:
    return "client" if d.client else "server"


def _whole_record(buf: bytearray) -> bool:
    return len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[3:5], "big")
