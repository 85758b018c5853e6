"""A real IMAP server for the tests: Debian's Dovecot, its own config, state and Maildir under a tmp folder,
IMAP on 127.0.0.1 only, run in the foreground by the test and stopped after it."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "imap-test-password"


class Dovecot:
    def __init__(self, *, port: int) -> None:
        self.port = port
        # not pytest's tmp_path: Dovecot's login and mail processes run as other users, who cannot enter
        # root's 0700 folders
        self.folder = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        self.folder.chmod(0o755)
        self.home = self.folder / "home"
        self.maildir = self.home / "Maildir"
        self.process: subprocess.Popen[bytes] | None = None
        owner = pwd.getpwnam("nobody")
        self.uid, self.gid = owner.pw_uid, owner.pw_gid

    def _config(self) -> str:
        d = self.folder
        return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""

    def __enter__(self) -> Self:
        for sub in ("run", "state", "home/Maildir/new", "home/Maildir/cur", "home/Maildir/tmp"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "users").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{self.uid}:{self.gid}::{self.home}\n", encoding="utf-8")
        (self.folder / "dovecot.conf").write_text(self._config(), encoding="utf-8")
        for path in [self.home, *self.home.rglob("*")]:
            os.chown(path, self.uid, self.gid)
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.folder / "dovecot.conf")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        output = self.process.stdout.read().decode() if self.process.stdout and self.process.poll() is not None else ""
        self.__exit__(None, None, None)
        raise RuntimeError(f"dovecot did not start: {output}{self.log()}")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def deliver(self, name: str, raw: bytes) -> None:
        """Drop a message into the mailbox as an MTA would (Maildir new/), owned by the mail user."""
        path = self.maildir / "new" / f"{time.time():.6f}.{name}.test"
        path.write_bytes(raw)
        os.chown(path, self.uid, self.gid)

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
