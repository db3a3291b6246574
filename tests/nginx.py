"""Debian's nginx on docs/nginx.conf, in front of an app port, for tests.

    with Nginx(app.port) as nginx:            # the file as shipped
        fetch(nginx.port, "/chat")
    Nginx(app.port, location=("proxy_http_version 1.0;",))   # a variant
    Nginx(app.port, tls=(certificate, key))   # also HTTP/2 over TLS, on .tls_port

Each instance runs in the foreground, one process, on a free port of
127.0.0.1 with its files in a temporary directory. The file is only
rewritten where its header comment says (``nginx_conf`` asserts that each
rewrite matches exactly once), so what passes is what a reader copies.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional

from tests.client import HOST, free_port
from tests.server import ROOT

CONF = os.path.join(ROOT, "docs", "nginx.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(
    tmp: str,
    port: int,
    app_port: int,
    location: tuple = (),
    server: tuple = (),
    by_path: bool = False,
    tls: Optional[tuple[int, str, str]] = None,
    second_app_port: Optional[int] = None,
) -> str:
    """docs/nginx.conf with the documented substitutions. ``location`` lines
    are added at the top of ``location /``, ``server`` lines replace the
    server block's line for the same directive or are added at its top
    (every location inherits them); ``by_path`` uncomments
    the file's `proxy_buffering off` location for the two streams; ``tls``,
    ``(port, certificate, key)``, uncomments the server's three HTTP/2 over
    TLS lines with that port and those files; ``second_app_port`` uncomments
    the upstream's second server with that port."""
    with open(CONF, encoding="utf-8") as f:
        text = f.read()

    def sub(pattern: str, replacement) -> None:
        nonlocal text
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        assert count == 1, f"docs/nginx.conf: expected one line matching {pattern!r}, found {count}"

    sub(r"^(\s*)listen 8080;$", rf"\g<1>listen {HOST}:{port};")
    sub(r"^(\s*)server 127\.0\.0\.1:8888( |;)", rf"\g<1>server {HOST}:{app_port}\g<2>")
    if second_app_port is not None:
        sub(r"^(\s*)# server 127\.0\.0\.1:8889( |;)", rf"\g<1>server {HOST}:{second_app_port}\g<2>")
    sub(r"^pid \S+;$", f"pid {tmp}/nginx.pid;")
    sub(r"^error_log \S+;$", f"error_log {tmp}/error.log;")
    sub(r"^(\s*)access_log \S+;$", rf"\g<1>access_log {tmp}/access.log;")
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        sub(rf"^(\s*){kind}_temp_path \S+;$", rf"\g<1>{kind}_temp_path {tmp}/{kind}_temp;")
    if location:
        sub(r"^(\s*)location / \{$", lambda m: m.group(0) + "".join(f"\n{m.group(1)}    {line}" for line in location))
    for line in server:
        directive = line.split()[0]
        if re.search(rf"^\s*{directive} ", text, re.M):
            sub(rf"^(\s*){directive} [^;]*;", rf"\g<1>{line}")
        else:
            sub(r"^(\s*)server_name \S+;$", rf"\g<0>\n\g<1>{line}")
    if by_path:
        # "# location ~ ... {" through "# }", each line without its "# ".
        sub(
            r"^(\s*)# (location ~ \^/\(ticker\|chat/events\)\$ \{\n(?:\1#     .*\n)+\1)# \}$",
            lambda m: m.group(1) + re.sub(rf"^{m.group(1)}# ", m.group(1), m.group(2), flags=re.M) + "}",
        )
    if tls is not None:
        tls_port, certificate, key = tls
        sub(r"^(\s*)# listen 8443 ssl http2;$", rf"\g<1>listen {HOST}:{tls_port} ssl http2;")
        sub(r"^(\s*)# ssl_certificate \S+;$", rf"\g<1>ssl_certificate {certificate};")
        sub(r"^(\s*)# ssl_certificate_key \S+;$", rf"\g<1>ssl_certificate_key {key};")
    live = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"/var/|/run/", live), "the test config would still write outside its directory"
    return text


class Nginx:
    """Debian's nginx on docs/nginx.conf, in the foreground, one process."""

    def __init__(
        self, app_port: int, start_timeout: float = 10.0, tls: Optional[tuple[str, str]] = None, **changes
    ) -> None:
        """``tls``, ``(certificate, key)`` (PEM files): also serve HTTP/2 over
        TLS, on ``tls_port``."""
        self.tmp = tempfile.mkdtemp(prefix="nginx-comet-")
        self.tls_port: Optional[int] = None
        self.process: Optional[subprocess.Popen] = None
        self._stderr = open(os.path.join(self.tmp, "stderr"), "w+b")
        try:
            # The free port may be taken between the probe and nginx's bind.
            for _attempt in range(3):
                self.port = free_port()
                if tls is not None:
                    self.tls_port = free_port()
                    changes["tls"] = (self.tls_port, *tls)
                self.conf = os.path.join(self.tmp, "nginx.conf")
                with open(self.conf, "w", encoding="utf-8") as f:
                    f.write(nginx_conf(self.tmp, self.port, app_port, **changes))
                self.process = subprocess.Popen(
                    [NGINX, "-p", self.tmp, "-c", self.conf, "-g", "daemon off; master_process off;"],
                    stdin=subprocess.DEVNULL,
                    stdout=self._stderr,
                    stderr=self._stderr,
                )
                if self._listening(start_timeout):
                    return
                if "in use" not in self.log():
                    raise RuntimeError(f"nginx did not start:\n{self.log()}")
            raise RuntimeError(f"nginx found no free port:\n{self.log()}")
        except BaseException:
            self.close()
            raise

    def _listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"nginx not listening on {self.port} within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        parts = []
        for name in ("stderr", "error.log"):
            try:
                with open(os.path.join(self.tmp, name), "rb") as f:
                    parts.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self._stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Nginx":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
