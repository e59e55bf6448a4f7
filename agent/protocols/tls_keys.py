"""TLS key schedules and record protection, on `cryptography` primitives only (no hand-written cipher).

- TLS 1.3 (RFC 8446 §7.1, §7.3, §5.2-5.3): HKDF-Expand-Label for the write key and IV of a traffic secret,
  `traffic upd` for KeyUpdate, per-record nonce = IV xor sequence number, the record header as AAD.
- TLS 1.2 (RFC 5246 §5, §6.3, §6.2.3.3; RFC 5288; RFC 7905): the PRF (P_SHA256 / P_SHA384 from HMAC), the key
  block from the logged master secret, AES-GCM with its 8-byte explicit nonce and ChaCha20-Poly1305 with
  IV xor sequence number; AAD = seq_num + type + version + plaintext length.

Only AEAD suites are decrypted; anything else is reported as unsupported by the caller (`suite()` is None).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

TAG_LEN: Final = 16
_SEQ: Final = struct.Struct("!Q")
_AAD12: Final = struct.Struct("!QBHH")


@dataclass(frozen=True, slots=True)
class Suite:
    code: int
    chacha: bool                    # ChaCha20-Poly1305, else AES-GCM
    key_len: int
    sha384: bool                    # the suite's hash (HKDF / PRF): SHA-384, else SHA-256
    tls13: bool

    def hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA384() if self.sha384 else hashes.SHA256()

    @property
    def hash_len(self) -> int:
        return 48 if self.sha384 else 32


def _suites() -> dict[int, Suite]:
    table: dict[int, Suite] = {
        0x1301: Suite(0x1301, False, 16, False, True),   # TLS_AES_128_GCM_SHA256
        0x1302: Suite(0x1302, False, 32, True, True),    # TLS_AES_256_GCM_SHA384
        0x1303: Suite(0x1303, True, 32, False, True),    # TLS_CHACHA20_POLY1305_SHA256
    }
    # TLS 1.2 AEAD suites (RFC 5288, RFC 5289, RFC 7905): ECDHE_ECDSA, ECDHE_RSA, RSA, DHE_RSA key exchanges.
    for code in (0xC02B, 0xC02F, 0x009C, 0x009E):        # *_WITH_AES_128_GCM_SHA256
        table[code] = Suite(code, False, 16, False, False)
    for code in (0xC02C, 0xC030, 0x009D, 0x009F):        # *_WITH_AES_256_GCM_SHA384
        table[code] = Suite(code, False, 32, True, False)
    for code in (0xCCA8, 0xCCA9, 0xCCAA):                # *_WITH_CHACHA20_POLY1305_SHA256
        table[code] = Suite(code, True, 32, False, False)
    return table


SUITES: Final = _suites()


def suite(code: int, version: int) -> Suite | None:
    """The suite if this version can use it and we decrypt it; None for CBC, CCM, NULL, export, …"""
    s = SUITES.get(code)
    if s is None or s.tls13 != (version == 0x0304):
        return None
    return s


def hkdf_expand_label(s: Suite, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """RFC 8446 §7.1 HKDF-Expand-Label(Secret, Label, Context, Length)."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + bytes([len(context)]) + context
    return HKDFExpand(s.hash(), length, info).derive(secret)


def next_traffic_secret(s: Suite, secret: bytes) -> bytes:
    """RFC 8446 §7.2: application_traffic_secret_N+1 after a KeyUpdate."""
    return hkdf_expand_label(s, secret, b"traffic upd", b"", s.hash_len)


def prf12(s: Suite, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 §5: PRF(secret, label, seed) = P_<hash>(secret, label + seed)."""
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        h = hmac.HMAC(secret, s.hash())
        h.update(a)
        a = h.finalize()
        h = hmac.HMAC(secret, s.hash())
        h.update(a + seed)
        out += h.finalize()
    return bytes(out[:length])


class RecordCipher:
    """One direction's record protection under one key: opens records in order, counting the sequence."""

    __slots__ = ("_aead", "_chacha", "_iv", "_tls13", "seq")

    def __init__(self, s: Suite, key: bytes, iv: bytes) -> None:
        self._aead = ChaCha20Poly1305(key) if s.chacha else AESGCM(key)
        self._iv = iv
        self._tls13 = s.tls13
        self._chacha = s.chacha
        self.seq = 0

    def __repr__(self) -> str:
        return f"RecordCipher(seq={self.seq})"    # never the key

    def _xor_nonce(self) -> bytes:
        pad = bytes(4) + _SEQ.pack(self.seq)
        return bytes(a ^ b for a, b in zip(self._iv, pad, strict=True))

    def open(self, header: bytes, payload: bytes) -> bytes | None:
        """The plaintext of one record (`header` = its 5 bytes), or None when the tag does not verify.

        The sequence number advances on success only, so that a caller may try a record under two keys
        (TLS 1.3 0-RTT: early data or the handshake flight)."""
        try:
            if self._tls13:
                if len(payload) < TAG_LEN + 1:
                    return None
                plain = self._aead.decrypt(self._xor_nonce(), payload, header)
                self.seq += 1
                return plain
            ctype, version = header[0], (header[1] << 8) | header[2]
            if self._chacha:
                n = len(payload) - TAG_LEN
                if n < 0:
                    return None
                nonce, body = self._xor_nonce(), payload
            else:
                n = len(payload) - 8 - TAG_LEN
                if n < 0:
                    return None
                nonce, body = self._iv + payload[:8], payload[8:]
            plain = self._aead.decrypt(nonce, body, _AAD12.pack(self.seq, ctype, version, n))
        except InvalidTag:
            return None
        self.seq += 1
        return plain


def tls13_cipher(s: Suite, secret: bytes) -> RecordCipher:
    """Record protection for a TLS 1.3 traffic secret (§7.3)."""
    return RecordCipher(s, hkdf_expand_label(s, secret, b"key", b"", s.key_len),
                        hkdf_expand_label(s, secret, b"iv", b"", 12))


def tls12_ciphers(s: Suite, master: bytes, client_random: bytes, server_random: bytes
                  ) -> tuple[RecordCipher, RecordCipher]:
    """(client write, server write) protection from a TLS 1.2 master secret (§6.3; AEAD: no MAC key)."""
    iv_len = 12 if s.chacha else 4
    block = prf12(s, master, b"key expansion", server_random + client_random, 2 * (s.key_len + iv_len))
    ck, sk = block[:s.key_len], block[s.key_len:2 * s.key_len]
    civ = block[2 * s.key_len:2 * s.key_len + iv_len]
    siv = block[2 * s.key_len + iv_len:]
    return RecordCipher(s, ck, civ), RecordCipher(s, sk, siv)

