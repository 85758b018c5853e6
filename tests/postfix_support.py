"""A real Postfix relay for the tests: Debian's package, its own config and queue under a tmp folder,
listening on 127.0.0.1 only, started and stopped by the test (``postfix -c DIR start|stop``).

It relays every outgoing message to a "remote" server on loopback (an aiosmtpd ``MailSink``), and the
bounce domain's mail (the DSNs Postfix writes itself) to the inbound listener, as docs/deployment.md tells
an operator to set it up with transport_maps. Queue times are seconds, so a soft refusal turns into a
bounce within a test.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

POSTFIX = "/usr/sbin/postfix"
_SERVICES = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    def __init__(self, *, port: int, remote_port: int, bounce_domain: str, inbound_port: int,
                 inbound_transport: str = "lmtp", queue_lifetime: str = "20s") -> None:
        # its own folder, not pytest's tmp_path: Postfix's daemons run as the postfix user, who cannot enter
        # a 0700 folder of root's
        folder = self.folder = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
        folder.chmod(0o755)
        self.port = port
        self.config = folder / "etc"
        self.queue = folder / "queue"
        self.log = folder / "maillog"
        inbound = (f"lmtp:inet:127.0.0.1:{inbound_port}" if inbound_transport == "lmtp"
                   else f"smtp:[127.0.0.1]:{inbound_port}")
        self.transport = f"{bounce_domain} {inbound}\n"
        self.main_cf = f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {folder / 'data'}
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test.invalid
mydomain = test.invalid
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
transport_maps = texthash:{self.config / 'transport'}
default_transport = smtp:[127.0.0.1]:{remote_port}
relay_transport = smtp:[127.0.0.1]:{remote_port}
maximal_queue_lifetime = {queue_lifetime}
bounce_queue_lifetime = {queue_lifetime}
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
delay_warning_time = 0
smtp_connect_timeout = 5s
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {self.log}
maillog_file_prefixes = {folder}
alias_maps =
alias_database =
biff = no
"""

    def __enter__(self) -> Self:
        for path in (self.config, self.queue, self.folder / "data"):
            path.mkdir(parents=True, exist_ok=True)
        (self.config / "main.cf").write_text(self.main_cf, encoding="utf-8")
        (self.config / "transport").write_text(self.transport, encoding="utf-8")
        (self.config / "master.cf").write_text(_SERVICES.format(listen=f"127.0.0.1:{self.port}"), encoding="utf-8")
        shutil.chown(self.folder / "data", "postfix")
        self._postfix("set-permissions")
        self._postfix("start")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        subprocess.run([POSTFIX, "-c", str(self.config), "abort"], capture_output=True, timeout=60, check=False)
        time.sleep(0.5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _postfix(self, command: str) -> None:
        done = subprocess.run([POSTFIX, "-c", str(self.config), command], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {done.stdout}{done.stderr}")

    def maillog(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
