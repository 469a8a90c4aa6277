"""A throwaway CVS repository driven by the real `cvs` binary, the way people use it.

The administrator configures CVSROOT/notify and CVSROOT/users by checking out CVSROOT,
editing and committing; watchers and editors are separate CVS users with their own
working copies. As root without a tty, CVS takes the user name from $LOGNAME, then $USER,
so each call gets a clean environment naming its user. Both `:local:` and `:fork:`
(client/server through a `cvs server` child) are supported.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

METHODS = ("local", "fork")
ADMIN = "cvsadmin"
DEFAULT_FILES = {
    "a.txt": "alpha\n",
    "b.txt": "bravo\n",
    "sub/s.txt": "sierra\n",
}


def cvs_binary() -> str:
    """Absolute path of `cvs`; a clear error (never a skip) when it is missing."""
    found = shutil.which("cvs")
    if found is None:
        raise RuntimeError(
            "the cvs binary is not installed: the CVS end-to-end tests need it "
            "(apt-get install cvs, or make deps)"
        )
    return found


def cvsmsg_script() -> Path:
    """The cvsmsg console script of the running venv (CVS's PATH may not include it)."""
    script = Path(sys.executable).with_name("cvsmsg")
    if not script.exists():
        raise RuntimeError(f"{script} does not exist: pip install -e . in this environment")
    return script


def notify_line(config: Path, *args: str, regex: str = "ALL") -> str:
    """A CVSROOT/notify line running cvsmsg by absolute path with `--config`.

    CVS runs the command with `sh -c`, so shell quoting protects odd paths; a literal `%`
    must be doubled (CVS expands `%s`, `%p`, ... and turns `%%` into `%`). The final `%s`
    is left for CVS to fill with the watcher's address.
    """
    words = [str(cvsmsg_script()), "notify", "--config", str(config), *args]
    quoted = " ".join(shlex.quote(w).replace("%", "%%") for w in words)
    return f"{regex} {quoted} %s"


def loginfo_line(config: Path, *args: str, regex: str = "ALL") -> str:
    """A CVSROOT/loginfo line running `cvsmsg loginfo` by absolute path with `--config`,
    in CVS 1.12's format: `%p` is the directory, `%{sVv}` the name/old/new triples."""
    words = [str(cvsmsg_script()), "loginfo", "--config", str(config), *args]
    quoted = " ".join(shlex.quote(w).replace("%", "%%") for w in words)
    return f"{regex} {quoted} %p %{{sVv}}"


def commitinfo_line(config: Path, *args: str, regex: str = "ALL") -> str:
    """A CVSROOT/commitinfo line running `cvsmsg commitinfo` with `--config`: `%p` is the
    directory, so that loginfo can send one message for a commit of several."""
    words = [str(cvsmsg_script()), "commitinfo", "--config", str(config), *args]
    quoted = " ".join(shlex.quote(w).replace("%", "%%") for w in words)
    return f"{regex} {quoted} %p"


@dataclass
class CvsResult:
    """What one `cvs` call did: exit code and both streams as text."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> CvsResult:
        """Raise with both streams when cvs failed."""
        if self.returncode != 0:
            raise RuntimeError(
                f"cvs {' '.join(self.args)} exited {self.returncode}\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
            )
        return self


@dataclass
class WorkingCopy:
    """One CVS user's checkout of a module."""

    repo: CvsRepo
    user: str
    path: Path

    def cvs(self, *args: str, check: bool = True, timeout: float = 60.0) -> CvsResult:
        """Run `cvs ARGS` in this working copy as this user."""
        return self.repo.cvs(*args, user=self.user, cwd=self.path, check=check, timeout=timeout)

    @property
    def pending_notify(self) -> Path:
        """CVS/Notify: notifications the client still has to send to the server."""
        return self.path / "CVS" / "Notify"


@dataclass
class CvsRepo:
    """A repository under `base`, reached as `:METHOD:base/repo`."""

    base: Path
    method: str = "local"
    module: str = "proj"
    # Passed to every cvs call (and so to the notify command): e.g. CVSMSG_CONFIG, or a
    # PATH that finds `cvsmsg` the way an installed system would.
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unsupported CVS access method {self.method!r}")
        self.base = self.base.resolve()
        self.binary = cvs_binary()

    @property
    def root(self) -> Path:
        """The repository directory, as CVS prints it in notifications."""
        return self.base / "repo"

    @property
    def cvsroot(self) -> str:
        return f":{self.method}:{self.root}"

    def home(self, user: str) -> Path:
        """A private $HOME per CVS user, so nobody's ~/.cvsrc leaks into the tests."""
        path = self.base / "home" / user
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, user: str) -> dict[str, str]:
        """A clean environment naming `user`, plus `extra_env`; `CVS_SERVER` is absolute."""
        path_dirs = [str(Path(self.binary).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        return {
            "PATH": ":".join(dict.fromkeys(path_dirs)),
            "HOME": str(self.home(user)),
            "LOGNAME": user,
            "USER": user,
            "CVSROOT": self.cvsroot,
            "CVS_SERVER": self.binary,
            "LC_ALL": "C.UTF-8",
            **self.extra_env,
        }

    def cvs(
        self, *args: str, user: str, cwd: Path, check: bool = True, timeout: float = 60.0
    ) -> CvsResult:
        """Run `cvs -f ARGS` (no ~/.cvsrc) as `user` in `cwd`, stdin closed, bounded."""
        argv = [self.binary, "-f", *args]
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=self.env(user),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        result = CvsResult(
            list(args),
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )
        return result.check() if check else result

    # -- set-up ------------------------------------------------------------------------

    def create(self, files: dict[str, str] | None = None) -> CvsRepo:
        """`cvs init`, then import the module with `files` (relative path -> text)."""
        self.base.mkdir(parents=True, exist_ok=True)
        # The repository is made in place; everything after it goes through `method`.
        self.cvs("-d", str(self.root), "init", user=ADMIN, cwd=self.base)
        source = self.base / "import-src"
        for rel, text in (files or DEFAULT_FILES).items():
            target = source / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.cvs("import", "-m", "initial import", self.module, "vendor", "start",
                 user=ADMIN, cwd=source)
        return self

    def admin_commit(self, files: dict[str, bytes], message: str) -> CvsResult:
        """Check out CVSROOT, write `files`, add new ones (and to checkoutlist), commit.

        Files CVS does not ship (like `users`) are only read from the repository's
        checked-out copy when checkoutlist names them: the real admin way.
        """
        wc = self.checkout(ADMIN, module="CVSROOT", name="admin-CVSROOT")
        known = {line.split("/")[1] for line in (wc.path / "CVS" / "Entries").read_text()
                 .splitlines() if line.startswith("/")}
        added = [name for name in files if name not in known]
        for name, data in files.items():
            (wc.path / name).write_bytes(data)
        if added:
            checkoutlist = wc.path / "checkoutlist"
            with checkoutlist.open("a") as fh:
                fh.writelines(f"{name}\n" for name in added)
            # -ko: keep values byte for byte (no $Id$ expansion in an address file).
            wc.cvs("add", "-ko", *added)
        return wc.cvs("commit", "-m", message)

    def install_notify(self, line: str, users: dict[str, str]) -> CvsResult:
        """Append `line` to CVSROOT/notify and write CVSROOT/users with `users` verbatim.

        A users value is written exactly as given (`"alice@x \\r"` stays so) because CVS
        passes it verbatim to the notify command.
        """
        notify = self.checkout(ADMIN, module="CVSROOT", name="admin-CVSROOT").path / "notify"
        text = notify.read_bytes() + line.encode() + b"\n"
        users_text = b"".join(f"{user}:{value}\n".encode() for user, value in users.items())
        return self.admin_commit({"notify": text, "users": users_text}, "cvsmsg notifications")

    def install_loginfo(self, line: str) -> CvsResult:
        """Append `line` to CVSROOT/loginfo and commit it (the commit runs it already)."""
        loginfo = self.checkout(ADMIN, module="CVSROOT", name="admin-CVSROOT").path / "loginfo"
        text = loginfo.read_bytes() + line.encode() + b"\n"
        return self.admin_commit({"loginfo": text}, "cvsmsg commit notifications")

    def install_hooks(self, commitinfo: str, loginfo: str) -> CvsResult:
        """Append `commitinfo` to CVSROOT/commitinfo and `loginfo` to CVSROOT/loginfo in
        one commit (which runs them already)."""
        admin = self.checkout(ADMIN, module="CVSROOT", name="admin-CVSROOT").path
        files = {name: (admin / name).read_bytes() + line.encode() + b"\n"
                 for name, line in (("commitinfo", commitinfo), ("loginfo", loginfo))}
        return self.admin_commit(files, "cvsmsg: one message per commit")

    def import_tree(self, user: str, directory: str, files: dict[str, str], message: str,
                    vendor: str = "VENDOR", release: str = "R1") -> CvsResult:
        """`cvs import` of `files` (relative path -> text) into `directory`, as `user`."""
        source = self.base / f"import-{directory.replace('/', '-')}"
        for rel, text in files.items():
            target = source / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return self.cvs("import", "-m", message, directory, vendor, release, user=user,
                        cwd=source)

    def checkout(self, user: str, module: str | None = None, name: str | None = None
                 ) -> WorkingCopy:
        """A working copy of `module` for `user` (updated if it is already there)."""
        module = module or self.module
        name = name or f"wc-{user}"
        path = self.base / name
        if path.exists():
            wc = WorkingCopy(self, user, path)
            wc.cvs("update", "-d")
            return wc
        self.cvs("checkout", "-d", name, module, user=user, cwd=self.base)
        return WorkingCopy(self, user, path)

    def checkout_all(self, *users: str) -> dict[str, WorkingCopy]:
        """Working copies for the administrator (CVSROOT) and each of `users`.

        One after the other: side by side they raced for the repository's `#cvs.lock`, and
        CVS waits 30 s before it looks at a lock again (two such waits on a loaded machine
        made a checkout miss its 60 s bound). Only the CVSROOT checkout, another directory,
        runs beside them.
        """
        with ThreadPoolExecutor(1) as pool:
            admin = pool.submit(self.checkout, ADMIN, module="CVSROOT", name="admin-CVSROOT")
            result = {user: self.checkout(user) for user in users}
            result[ADMIN] = admin.result()
        return result

    def watcher(self, user: str, *actions: str) -> WorkingCopy:
        """`user` checks out the module, turns watches on and adds a watch (all actions
        unless `actions` are given: edit, unedit, commit)."""
        wc = self.checkout(user)
        wc.cvs("watch", "on")
        flags = [arg for action in actions for arg in ("-a", action)]
        wc.cvs("watch", "add", *flags)
        return wc
