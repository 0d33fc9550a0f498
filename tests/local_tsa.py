"""A real RFC 3161 timestamp authority on 127.0.0.1 for tests: ``openssl ts -reply`` behind a tiny
HTTP handler, with a throwaway CA and a TSA certificate (extendedKeyUsage critical timeStamping)."""

from __future__ import annotations

import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TSA_CONFIG = """
[ tsa ]
default_tsa = vigil_test_tsa
[ vigil_test_tsa ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tsa_pki(directory: Path, name: str = "vigil test") -> Path:
    """A root CA and a TSA certificate it issued; returns the directory (ca.crt, tsa.crt, tsa.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", f"/CN={name} root", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
             "-subj", f"/CN={name} TSA", cwd=directory)  # fmt: skip
    (directory / "tsa.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n"
    )
    _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "tsa.crt", "-days", "2", "-extfile", "tsa.ext", cwd=directory)  # fmt: skip
    (directory / "serial").write_text("01\n")
    (directory / "tsa.cnf").write_text(TSA_CONFIG.format(dir=directory))
    return directory


@dataclass
class LocalTsa:
    url: str
    root: Path  # the CA certificate (PEM) a token's chain ends in
    requests: list  # one item per request answered, for tests that count
    server: ThreadingHTTPServer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_tsa(directory: Path) -> LocalTsa:
    pki = make_tsa_pki(directory)
    lock = threading.Lock()  # openssl ts updates the serial file: one reply at a time
    answered: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with lock, tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "q.tsq").write_bytes(query)
                subprocess.run(["openssl", "ts", "-reply", "-config", str(pki / "tsa.cnf"), "-queryfile", "q.tsq",
                                "-out", "r.tsr"], cwd=tmp, check=True, capture_output=True)  # fmt: skip
                reply = (Path(tmp) / "r.tsr").read_bytes()
            answered.append(len(query))
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return LocalTsa(f"http://127.0.0.1:{server.server_address[1]}/tsa", pki / "ca.crt", answered, server)
