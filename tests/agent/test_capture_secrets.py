"""pcapng Decryption Secrets Blocks: read into a KeyLog by agent.capture when one is handed over, so a capture
with injected secrets (`editcap --inject-secrets tls,keys.log`) decrypts with no key log option."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.anomalies import AnomalySink
from agent.capture import open_capture
from agent.decode import Decoder
from agent.keylog import KeyLog
from agent.protocols.tls_decrypt import TlsDecryptor
from fixtures.pcaps.craft import Capture, Host, IpIds, TcpConn, pcap_bytes
from tests.agent.tls_streams import Stream, python_pair

REAL = Path("/work/shared/pcaps/real")
if not REAL.is_dir():
    REAL = Path(__file__).parents[3] / "shared" / "pcaps" / "real"
CLIENT = Host("10.20.0.5", "02:00:00:00:00:05")
SERVER = Host("203.0.113.10", "02:00:00:00:00:0a")
needs_editcap = pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (Wireshark) missing")


def test_the_real_secrets_block_is_read_and_the_packets_are_unchanged() -> None:
    path = REAL / "quic_v2-sll-dsb.pcapng"
    if not path.is_file():
        pytest.skip("shared real captures not available")
    keylog = KeyLog()
    with_secrets = list(open_capture(path, AnomalySink(strict=True), secrets=keylog))
    without = list(open_capture(path, AnomalySink(strict=True)))
    assert with_secrets == without and len(without) == 19
    # 13 QUIC connections' TLS secrets (tshark -o tls.keylog_file agrees: 69 lines, no bad one).
    assert len(keylog) == 69 and keylog.bad_lines == 0


def _connection(folder: Path) -> Stream:
    pair = python_pair(folder, alpn=("http/1.1",))     # HTTP/1.1 inside, for tshark to read it as such
    pair.handshake()
    pair.send(b"POST /v1/upload HTTP/1.1\r\nHost: export.example\r\nContent-Length: 5\r\n\r\nhello", True)
    pair.send(b"HTTP/1.1 204 No Content\r\n\r\n", False)
    pair.send(b"GET /v1/status HTTP/1.1\r\nHost: export.example\r\n\r\n", True)
    return pair.finish()


def _pcap(stream: Stream, path: Path) -> None:
    cap = Capture(1_700_000_000_000_000)
    conn = TcpConn(cap, IpIds(), CLIENT, SERVER, 40000, 443, isn_c=1000, isn_s=5000)
    conn.handshake()
    for from_client, chunk in stream.order:
        if from_client:
            conn.send(chunk)
        else:
            conn.recv(chunk)
    conn.close()
    path.write_bytes(pcap_bytes(cap.frames))


def _injected(folder: Path) -> Stream:
    """A connection written as plain.pcap, then as dsb.pcapng with its key log injected by editcap."""
    stream = _connection(folder)
    (folder / "keys.log").write_text(stream.keylog)
    _pcap(stream, folder / "plain.pcap")
    subprocess.run(["editcap", "--inject-secrets", f"tls,{folder / 'keys.log'}", str(folder / "plain.pcap"),
                    str(folder / "dsb.pcapng")], check=True, capture_output=True)
    return stream


@needs_editcap
def test_a_capture_with_injected_secrets_decrypts_with_no_key_log_file(tmp_path: Path) -> None:
    stream = _injected(tmp_path)
    keylog = KeyLog()
    anomalies = AnomalySink(strict=True)
    decoder = Decoder(anomalies)
    got: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
    dec = TlsDecryptor(keylog, flow_id="f", anomalies=anomalies, on_plaintext=lambda d, c: got[c].extend(d))
    for ts, linktype, frame in open_capture(tmp_path / "dsb.pcapng", anomalies, secrets=keylog):
        packet = decoder.decode(ts, linktype, frame)
        if packet is not None and packet.payload:      # craft.py sends in order, without retransmissions
            dec.feed(packet.payload, packet.src == CLIENT.ip)
    dec.close()
    assert len(keylog) == 5      # TLS 1.3: two handshake, two traffic and the exporter secret
    assert bytes(got[True]) == stream.client_sent and bytes(got[False]) == stream.server_sent


@needs_editcap
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_the_same_requests_from_the_injected_capture(tmp_path: Path) -> None:
    """The oracle: the stream and its injected secrets are what Wireshark expects too."""
    _injected(tmp_path)
    out = subprocess.run(["tshark", "-r", str(tmp_path / "dsb.pcapng"), "-Y", "http.request", "-T", "fields",
                          "-e", "http.request.method", "-e", "http.request.uri"],
                         check=True, capture_output=True, text=True).stdout
    assert out.split("\n")[:2] == ["POST\t/v1/upload", "GET\t/v1/status"]
