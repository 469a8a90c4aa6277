"""A throwaway Prosody on loopback: own config, data dir, self-signed CA. Used by the
tests, the demo and the benchmark (never the packaged /etc/prosody config)."""

from __future__ import annotations

import grp
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DOMAIN = "localhost"
# A second virtual host on the same server: "another domain" for subscription policy tests
# (local hosts reach each other without s2s).
OTHER_DOMAIN = "elsewhere.localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def make_ca(
    directory: Path, domain: str = DOMAIN, also: tuple[str, ...] = ()
) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for `domain` (and the domains `also`) signed
    by it: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "ext.cnf"
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
          "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=cvsmsg test CA"])
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
          "-out", str(csr), "-subj", f"/CN={domain}"])
    ext.write_text(
        f"subjectAltName={','.join(f'DNS:{d}' for d in (domain, *also))}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
          "-CAcreateserial", "-days", "30", "-out", str(cert), "-extfile", str(ext)])
    for p in (ca_key, key):
        p.chmod(0o600)
    return ca, cert, key


@dataclass
class Prosody:
    """One Prosody process; `start()` returns once it accepts connections."""

    workdir: Path
    domain: str = DOMAIN
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    extra_config: str = ""  # Lua; must not repeat an option set here (Prosody 0.12 crashes)
    require_encryption: bool = True
    extra_domains: tuple[str, ...] = ()  # more VirtualHosts, in the certificate too
    modules: tuple[str, ...] = (
        "roster", "saslauth", "tls", "disco", "ping", "posix", "smacks", "offline"
    )
    proc: subprocess.Popen[bytes] | None = None
    # A group-chat service (XEP-0045, mod_muc) on this component domain; anyone may create
    # rooms there (a test client creates and configures the rooms it needs).
    muc_domain: str | None = None

    @property
    def config(self) -> Path:
        return self.workdir / "prosody.cfg.lua"

    @property
    def ca(self) -> Path:
        return self.workdir / "certs" / "ca.pem"

    @property
    def log(self) -> Path:
        return self.workdir / "prosody.log"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = self.workdir / "certs"
        if not (certs / "server.pem").exists():
            make_ca(certs, self.domain, self.extra_domains)
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        self.config.write_text(f"""
pidfile = "{self.workdir}/prosody.pid"
data_path = "{data}"
run_as_root = true
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.port} }}
c2s_direct_tls_ports = {{ {self.tls_port} }}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
modules_disabled = {{ "s2s" }}
modules_enabled = {{ {"; ".join(f'"{m}"' for m in self.modules)} }}
c2s_require_encryption = {"true" if self.require_encryption else "false"}
allow_registration = false
authentication = "internal_hashed"
storage = "internal"
network_settings = {{ nagle = false }}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{self.log}" }} }}
ssl = {{ key = "{certs}/server.key"; certificate = "{certs}/server.pem" }}
{self.extra_config}
VirtualHost "{self.domain}"
""" + "".join(f'VirtualHost "{d}"\n' for d in self.extra_domains) + (
            f'Component "{self.muc_domain}" "muc"\n    restrict_room_creation = false\n'
            if self.muc_domain else ""))

    def start(self, timeout: float = 15.0) -> None:
        if shutil.which("prosody") is None:
            raise RuntimeError("prosody is not installed (apt-get install prosody)")
        self.write_config()
        self.proc = subprocess.Popen(
            ["prosody", "--config", str(self.config), "-F"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody exited with {self.proc.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prosody did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def register(self, user: str, password: str, domain: str | None = None) -> str:
        """Create an account with prosodyctl (on `domain`, default the main one); its JID."""
        domain = domain or self.domain
        _run(["prosodyctl", "--config", str(self.config), "register", user, domain, password])
        return f"{user}@{domain}"

    def write_cvsmsg_config(self, path: Path, jid: str, password: str, **extra: object) -> Path:
        """A cvsmsg config (mode 0600) pointing at this server and trusting its CA; its
        spool is `spool` next to it unless `spool_dir` is given."""
        server = extra.pop("server", f"127.0.0.1:{self.port}")
        extra.setdefault("spool_dir", str(path.parent / "spool"))
        # the tests run as root, which creates a shared spool only with a group given
        extra.setdefault("spool_group", grp.getgrgid(os.getegid()).gr_name)
        lines = [
            f'jid = "{jid}"',
            f'password = "{password}"',
            f'server = "{server}"',
            f'ca_file = "{self.ca}"',
        ]
        for key, value in extra.items():
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            elif isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, list):
                items = ", ".join(f'"{v}"' for v in value)
                lines.append(f"{key} = [{items}]")
            else:
                lines.append(f"{key} = {value}")
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path
