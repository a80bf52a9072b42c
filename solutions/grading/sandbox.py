"""Run one command in its own limited process: the isolation primitive of the grader.

A submission is untrusted code. ``run_sandboxed`` runs it with a wall-clock limit, resource limits,
no network, a minimal environment, and (where the machine allows it) a filesystem view that holds
only the system, the paths the caller lists as readable, and one writable scratch directory.

Methods, strongest first (``available_methods()`` says which work on this machine)::

    bwrap+uid    bubblewrap run by root: new mount, pid, net, ipc, uts namespaces; inside, the
                 command runs as an unprivileged ``grader-sandbox`` user (setpriv, no capabilities;
                 each run leases its own uid from the pool grader-sandbox, grader-sandbox-2, ...).
                 Only mounted paths exist; files also need "other" permissions to be read.
    bwrap        bubblewrap with a user namespace (no dedicated uid): same filesystem and network
                 isolation, but the process count limit does not hold when the caller is root.
    uid+netns    no bubblewrap: the command runs as ``grader-sandbox`` in new net/ipc/uts/mount
                 namespaces (util-linux ``unshare``) with private /tmp, /var/tmp, /dev/shm, /run/lock.
                 The whole filesystem is visible: what it cannot read depends on file permissions,
                 so the caller must make the course directory unreadable to that user.
    uid          the same without namespaces: no network isolation.
    rlimit-only  resource limits and a new session only. No isolation at all: a last resort that
                 the result says plainly (``method`` and ``notes``).

SANDBOX.md beside this file records what was measured and the caveats a grader author must know.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import math
import os
import pwd
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_USER = "grader-sandbox"
_LOCK_DIR = "/run/grader-sandbox"  # root only; the leases of sandbox uids
METHODS = ("bwrap+uid", "bwrap", "uid+netns", "uid", "rlimit-only")

# What each method guarantees. Tests check exactly these promises, and graders can refuse weak ones.
GUARANTEES = {
    "bwrap+uid": {"filesystem": "mounts", "private_tmp": True, "network": True, "nprocs": True,
                  "dedicated_uid": True, "disk": True},
    "bwrap": {"filesystem": "mounts", "private_tmp": True, "network": True, "nprocs": "non-root caller",
              "dedicated_uid": False, "disk": True},
    "uid+netns": {"filesystem": "permissions", "private_tmp": True, "network": True, "nprocs": True,
                  "dedicated_uid": True, "disk": True},
    "uid": {"filesystem": "permissions", "private_tmp": False, "network": False, "nprocs": True,
            "dedicated_uid": True, "disk": False},
    "rlimit-only": {"filesystem": None, "private_tmp": False, "network": False, "nprocs": "non-root caller",
                    "dedicated_uid": False, "disk": False},
}

# Minimal /etc inside bwrap: enough for the dynamic linker, user names and time zones.
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf",
              "localtime", "timezone", "alternatives", "hosts", "mime.types")
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Where an unprivileged user can usually write outside the scratch dir; uid+netns hides them.
_SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_OOM_MARKERS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory", b"out of memory",
                b"DefaultCPUAllocator: can't allocate memory", b"failed to map segment from shared object",
                b"Unable to allocate")


@dataclass
class Limits:
    wall_s: float = 60
    cpu_s: float = 60                  # per process (RLIMIT_CPU); the wall limit bounds the tree
    memory_bytes: int = 4 * 2**30      # address space per process (RLIMIT_AS)
    file_bytes: int = 64 * 2**20       # largest file one process may write (RLIMIT_FSIZE)
    nprocs: int = 64                   # processes + threads of the sandbox user (RLIMIT_NPROC)
    open_files: int = 256              # RLIMIT_NOFILE
    output_bytes: int = 1 * 2**20      # kept of stdout and of stderr each; the rest is read and dropped
    tmp_bytes: int = 256 * 2**20       # size of the private /tmp and /dev/shm (tmpfs, in RAM)
    # size of the scratch dir (a tmpfs private to the run, gone when it ends; bwrap and uid+netns).
    # None: scratch is the host folder itself, kept after the run, with no total bound.
    disk_bytes: int | None = None
    # memory of the whole process tree (a cgroup where this machine allows one, else the tree's
    # resident memory polled ten times a second); None: only the per-process memory_bytes
    total_memory_bytes: int | None = None


@dataclass
class SandboxResult:
    returncode: int | None             # as subprocess: negative = killed by that signal
    timed_out: bool
    killed_by_signal: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    wall_s: float
    oom_suspected: bool                # best effort: a memory error was seen
    method: str
    notes: list[str] = field(default_factory=list)
    memory_exceeded: bool = False      # the tree went over total_memory_bytes and was stopped
    memory_bound: str | None = None    # how total_memory_bytes was enforced: "cgroup v1", "cgroup v2", "polled"

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class SandboxError(RuntimeError):
    """The sandbox could not be set up as asked (not a failure of the command inside)."""


# ---------------------------------------------------------------------------------------------
# Detection


def sandbox_ids(user: str = SANDBOX_USER) -> tuple[int, int] | None:
    """(uid, gid) of the sandbox user, or None if it does not exist."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def ensure_sandbox_user(user: str = SANDBOX_USER, count: int = 1) -> tuple[int, int]:
    """Create the unprivileged sandbox user if it is missing (needs root); with ``count`` > 1 also
    ``<user>-2`` .. ``<user>-<count>``, so that that many sandboxes can run at once (each run
    leases one uid for itself). Returns (uid, gid) of ``user``."""
    for name in [user] + [f"{user}-{i}" for i in range(2, count + 1)]:
        if sandbox_ids(name) is None:
            if os.geteuid() != 0:
                raise SandboxError(f"user {name!r} does not exist and only root can create it")
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", "--user-group", name],
                           check=True, capture_output=True)
            _detect.cache_clear()
    return sandbox_ids(user)


def _pool(user: str) -> list[str]:
    """The sandbox users a run may lease: ``user``, then ``user-2``, ``user-3``, ... while they exist."""
    names = [user]
    while sandbox_ids(f"{user}-{len(names) + 1}") is not None:
        names.append(f"{user}-{len(names) + 1}")
    return names


@contextlib.contextmanager
def _lease(user: str):
    """Hold one uid of the pool for one run, across threads and processes (flock in a root-only
    directory). A run kills every process of its uid at the end, so two runs never share one."""
    os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
    while True:
        for name in _pool(user):
            fd = os.open(f"{_LOCK_DIR}/{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield name
            finally:
                os.close(fd)
            return
        time.sleep(0.05)  # all busy: the others end within their wall limits


def available_methods(user: str = SANDBOX_USER) -> list[str]:
    """The methods that work here, strongest first, each proven once by running a tiny probe."""
    return list(_detect(user))


@functools.lru_cache(maxsize=None)
def _detect(user: str) -> tuple[str, ...]:
    found = []
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as tmp:
        for method in METHODS:
            if not _prerequisites(method, user):
                continue
            scratch = Path(tmp) / method.replace("+", "-")
            scratch.mkdir()
            os.chmod(tmp, 0o755)
            try:
                result = run_sandboxed(["/bin/sh", "-c", "echo probe-ok"], scratch,
                                       Limits(wall_s=20), method=method, user=user)
            except (SandboxError, OSError):
                continue
            if result.returncode == 0 and result.stdout == b"probe-ok\n":
                found.append(method)
    return tuple(found)


def _prerequisites(method: str, user: str) -> bool:
    root = os.geteuid() == 0
    has_user = sandbox_ids(user) is not None
    if method == "bwrap+uid":
        return root and has_user and bool(shutil.which("bwrap")) and bool(shutil.which("setpriv"))
    if method == "bwrap":
        return bool(shutil.which("bwrap"))
    if method == "uid+netns":
        return root and has_user and bool(shutil.which("unshare")) and bool(shutil.which("setpriv"))
    if method == "uid":
        return root and has_user
    return method == "rlimit-only"


def python_paths(python: str | os.PathLike = sys.executable) -> list[Path]:
    """What a sandbox must be able to read to run this interpreter: its (virtual) environment and
    the base installation it points to (a venv's python is a symlink into e.g. ~/.pyenv)."""
    python = Path(python)
    if python == Path(sys.executable):
        prefixes = [sys.prefix, sys.base_prefix]
    else:
        out = subprocess.run([str(python), "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                             check=True, capture_output=True, text=True).stdout
        prefixes = out.split()
    paths = [Path(p).resolve() for p in prefixes]
    paths.append(python.resolve().parent.parent)
    return sorted(set(paths), key=str)


# ---------------------------------------------------------------------------------------------
# Running


def run_sandboxed(argv: Sequence[str], scratch_dir: Path, limits: Limits | None = None, *,
                  readable: Iterable[os.PathLike | str] = (), env: dict[str, str] | None = None,
                  stdin: bytes | None = None, method: str | None = None, user: str = SANDBOX_USER,
                  watchdog: Callable[[], bool] | None = None, pass_fds: Sequence[int] = (),
                  mounts: Sequence[tuple[os.PathLike | str, os.PathLike | str]] = ()) -> SandboxResult:
    """Run ``argv`` in the sandbox and return what happened; never raises for the command's sake.

    ``scratch_dir`` is the working directory, HOME and the only writable place; it and everything
    in it are chowned to the sandbox user (to root, for methods without one, when run as root).
    ``readable`` are extra read-only paths, e.g. ``python_paths()``. ``env`` is added to a minimal
    environment; nothing is inherited from this process. ``method`` picks one of
    ``available_methods()``; the default is the strongest one. ``user`` names the pool of sandbox
    users (see ``ensure_sandbox_user``): concurrent runs each lease their own uid, and wait when
    all are busy. ``watchdog`` is called about ten times a second while the command runs;
    returning True kills it (``notes`` says so). ``pass_fds`` stay open in the command (pipes
    the caller owns). ``mounts`` are (source, destination) pairs bound read-only at the
    destination, over whatever is there (bwrap methods only). Thread-safe.
    """
    limits = limits or Limits()
    scratch = Path(scratch_dir).resolve()
    if not scratch.is_dir():
        raise SandboxError(f"scratch dir {scratch} does not exist")
    notes = []
    if method is None:
        methods = available_methods(user)
        method = methods[0] if methods else "rlimit-only"
    elif method not in METHODS:
        raise SandboxError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    elif not _prerequisites(method, user):
        raise SandboxError(f"method {method!r} is not available here")
    if method == "rlimit-only":
        notes.append("rlimit-only: limits and a new session, no isolation: the command can read and "
                     "write what this process can, and use the network")
    readable = [Path(p) for p in readable]
    for path in readable:
        if not path.exists():
            raise SandboxError(f"readable path {path} does not exist")
    mounts = [(Path(s).resolve(), Path(d).absolute()) for s, d in mounts]
    if mounts and not method.startswith("bwrap"):
        raise SandboxError(f"method {method!r} cannot mount paths; use a bwrap method")
    if limits.disk_bytes is not None and not GUARANTEES[method]["disk"]:
        notes.append(f"{method}: the scratch dir has no total size bound (disk_bytes is not enforced)")
    extra = dict(pass_fds=tuple(pass_fds), mounts=mounts)
    if not GUARANTEES[method]["dedicated_uid"]:
        if os.geteuid() == 0:
            _hand_over(scratch, 0, 0)  # back from an earlier run as the sandbox user
        return _run(list(argv), scratch, limits, readable, env, stdin, method, None, watchdog, notes, **extra)
    with _lease(user) as name:
        ids = sandbox_ids(name)
        _hand_over(scratch, *ids)
        if method.startswith("bwrap"):  # bwrap creates the parents; the paths need "other" read
            problems = [f"{p} (no read permission)" for p in readable if not _allowed(p.resolve(), *ids, "r")]
        else:
            problems = _unreachable(ids, [scratch, *readable], argv[0])
        if problems:
            raise SandboxError(f"the sandbox user {name!r} cannot reach: " + "; ".join(problems))
        if name != user:
            notes.append(f"ran as {name}")
        _kill_uid(ids)  # leftovers of a grader that crashed would count against RLIMIT_NPROC
        return _run(list(argv), scratch, limits, readable, env, stdin, method, ids, watchdog, notes, **extra)


def _run(argv: list[str], scratch: Path, limits: Limits, readable: list[Path], env: dict | None,
         stdin: bytes | None, method: str, ids: tuple[int, int] | None,
         watchdog: Callable[[], bool] | None, notes: list[str], pass_fds: tuple[int, ...] = (),
         mounts: list[tuple[Path, Path]] = ()) -> SandboxResult:
    full_env = {"HOME": str(scratch), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MPLBACKEND": "Agg"}
    full_env.update(env or {})
    nprocs = limits.nprocs
    if not ids and os.geteuid() != 0:
        # RLIMIT_NPROC counts all processes of the uid: leave room for the caller's own.
        nprocs += _count_tasks(os.getuid())
    # The limits are set by exec wrappers (prlimit, setpriv from util-linux), not by a preexec_fn,
    # which is unsafe in a threaded grader. Without util-linux, preexec_fn is the fallback.
    wrappers = _limit_wrappers(limits, nprocs, no_new_privs=method in ("uid", "rlimit-only"))
    command = wrappers + _wrap(method, argv, scratch, readable, limits, ids, mounts)
    preexec = None if wrappers else functools.partial(_set_limits, limits, nprocs, method in ("uid", "rlimit-only"))
    group = _MemoryGroup.create(limits.total_memory_bytes) if limits.total_memory_bytes else None
    if group is not None:
        command = group.wrapper() + command
        bound = group.kind
    else:
        bound = "polled" if limits.total_memory_bytes else None
    poll = _TreeMemory(limits.total_memory_bytes, ids) if limits.total_memory_bytes and group is None else None

    stdin_file = None
    if stdin is not None:
        stdin_file = tempfile.TemporaryFile()
        stdin_file.write(stdin)
        stdin_file.seek(0)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            command, cwd=scratch, env=full_env, start_new_session=True, close_fds=True,
            stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec, pass_fds=pass_fds,
            # uid without namespaces: switch user here; the other uid methods use setpriv.
            **({"user": ids[0], "group": ids[1], "extra_groups": []} if ids and method == "uid" else {}),
        )
    except OSError as e:  # only where nothing wraps the command
        if group is not None:
            group.remove()
        raise SandboxError(f"could not start {command[0]}: {e}") from e
    finally:
        if stdin_file is not None:
            stdin_file.close()
    over = False
    if poll is not None or group is not None:
        if poll is not None:
            poll.root = proc.pid
        inner = watchdog

        def watchdog() -> bool:  # noqa: F811 (the caller's, plus the memory of the whole tree)
            nonlocal over
            if (poll or group).exceeded():  # a cgroup's OOM kill ends the whole run, not one process
                over = True
                return True
            return bool(inner and inner())
    try:
        out, err, timed_out, stopped = _collect(proc, start + limits.wall_s, limits.output_bytes, watchdog)
        wall = time.monotonic() - start
    finally:
        _kill_tree(proc, ids)
        if group is not None:
            over = over or group.exceeded()
            group.remove()

    rc = proc.returncode
    if method.startswith("bwrap") and rc is not None and rc > 128:
        # bwrap reports a signal as 128 + N, like a shell; give it back as subprocess does.
        notes.append(f"exit status {rc} read as signal {rc - 128}")
        rc = 128 - rc
    signum = -rc if rc is not None and rc < 0 else None
    if timed_out:
        notes.append(f"killed after the wall limit of {limits.wall_s} s")
    if over:
        stopped = False
        notes.append(f"killed: the processes together used more than {limits.total_memory_bytes} bytes of memory ({bound})")
    if stopped:
        notes.append("killed because the watchdog asked")
    oom = over or (not timed_out and any(m in bytes(err.tail) or m in bytes(err.data) for m in _OOM_MARKERS))
    return SandboxResult(returncode=rc, timed_out=timed_out, killed_by_signal=signum,
                         stdout=bytes(out.data), stderr=bytes(err.data),
                         stdout_truncated=out.truncated, stderr_truncated=err.truncated,
                         wall_s=wall, oom_suspected=oom, method=method, notes=notes,
                         memory_exceeded=over, memory_bound=bound)


def readable_inside(paths: Iterable[os.PathLike | str], scratch_dir: Path, *, method: str | None = None,
                    readable: Iterable[os.PathLike | str] = (), user: str = SANDBOX_USER) -> list[Path]:
    """Which of ``paths`` the sandboxed command could read (open a file, list a directory).
    A grader should call this once before a batch with the gradebook, the course directory and
    the submissions, and refuse to go on if the answer is not empty."""
    paths = [Path(p) for p in paths]
    script = ('for p in "$@"; do if [ -d "$p" ]; then ls -- "$p" >/dev/null 2>&1 && echo "$p"; '
              'else head -c1 -- "$p" >/dev/null 2>&1 && echo "$p"; fi; done; exit 0')
    result = run_sandboxed(["/bin/sh", "-c", script, "sh", *map(str, paths)], scratch_dir,
                           Limits(wall_s=30), method=method, readable=readable, user=user)
    if result.returncode != 0 or result.timed_out:
        raise SandboxError(f"probe failed: {result.stderr.decode(errors='replace')}")
    return [Path(line) for line in result.stdout.decode().splitlines()]


# ---------------------------------------------------------------------------------------------
# Pieces


def _wrap(method: str, argv: list[str], scratch: Path, readable: list[Path], limits: Limits,
          ids: tuple[int, int] | None, mounts: list[tuple[Path, Path]] = ()) -> list[str]:
    """The full command line for one method."""
    if method in ("uid", "rlimit-only"):
        return argv
    drop = []
    if ids:
        drop = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    if method == "uid+netns":
        # As root in fresh namespaces, hide the shared writable dirs under private tmpfs mounts,
        # then become the sandbox user. If scratch lies under one of them, it is mounted back:
        # "cd" keeps hold of it while it is covered, and "mount --bind ." puts it in place again.
        script = ""
        for shared in _SHARED_WRITABLE:
            d = Path(shared)
            if not d.is_dir() or d.is_symlink() or any(d == p or d in p.parents for p in readable):
                continue
            script += f"mount -t tmpfs -o size={limits.tmp_bytes},mode=1777,nosuid,nodev tmpfs {d} && "
            if d in scratch.parents:
                script = ('cd -- "$S" && ' + script +
                          'mkdir -p -- "$S" && mount --no-canonicalize --bind . "$S" && cd -- "$S" && ')
        if limits.disk_bytes is not None and ids:
            # a private, size-limited scratch: the host folder stays empty
            script += (f'mount -t tmpfs -o size={limits.disk_bytes},mode=0700,uid={ids[0]},gid={ids[1]},nosuid,nodev '
                       'tmpfs "$S" && cd -- "$S" && ')
        script = 'S=$1 && shift && ' + script + 'exec "$@"'
        return ["unshare", "--net", "--ipc", "--uts", "--mount", "--", "/bin/sh", "-c", script, "sh",
                str(scratch), *drop, *argv]
    return ["bwrap", *_bwrap_args(method, scratch, readable, limits, mounts), *drop, *argv]


def _bwrap_args(method: str, scratch: Path, readable: list[Path], limits: Limits,
                mounts: list[tuple[Path, Path]] = ()) -> list[str]:
    args = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if method == "bwrap":
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        if os.geteuid() == 0:  # root in a user namespace would own every mounted root file
            args += ["--uid", "65534", "--gid", "65534"]
    # Directories on bwrap's own root or in its tmpfs mounts must be created before something is
    # mounted below them; bwrap would make them 0700, which the sandbox user could not enter.
    # Below a directory bound from the host, they exist already.
    bound: list[Path] = []
    created: set[Path] = set()

    def bind(flag: str, src: Path, dest: Path) -> None:
        for parent in reversed(dest.parents):
            if parent in created or any(b == parent or b in parent.parents for b in bound):
                continue
            args.extend(["--perms", "0755", "--dir", str(parent)])
            created.add(parent)
        args.extend([flag, str(src), str(dest)])
        bound.append(dest)

    bind("--ro-bind", Path("/usr"), Path("/usr"))
    for name in _TOP_LEVEL:
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            bind("--ro-bind", top, top)
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for python_etc in sorted(Path("/etc").glob("python3*")):
        args += ["--ro-bind", str(python_etc), str(python_etc)]
    args += ["--dev", "/dev", "--proc", "/proc"]
    for tmp in ("/tmp", "/dev/shm"):
        args += ["--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", tmp]
    created.update(map(Path, ["/", "/etc", "/dev", "/dev/shm", "/proc", "/tmp"]))
    for path in sorted(set(readable), key=lambda p: len(p.parts)):
        real = path.resolve()
        bind("--ro-bind", real, real)
        if path.absolute() != real:
            bind("--ro-bind", real, path.absolute())
    for src, dest in mounts:
        bind("--ro-bind", src, dest)
    if limits.disk_bytes is not None:
        for parent in reversed(scratch.parents):
            if parent not in created and not any(b == parent or b in parent.parents for b in bound):
                args.extend(["--perms", "0755", "--dir", str(parent)])
                created.add(parent)
        args += ["--perms", "0777", "--size", str(limits.disk_bytes), "--tmpfs", str(scratch)]
        bound.append(scratch)
    else:
        bind("--bind", scratch, scratch)
    # The root is bwrap's own tmpfs; read-only, so that only scratch, /tmp and /dev/shm are writable.
    args += ["--remount-ro", "/", "--chdir", str(scratch), "--"]
    return args


def _limit_wrappers(limits: Limits, nprocs: int, no_new_privs: bool) -> list[str]:
    """prlimit (and setpriv --no-new-privs) in front of the command; [] without util-linux.
    The soft CPU limit sends SIGXCPU, one second later the hard one SIGKILL."""
    if not (shutil.which("prlimit") and shutil.which("setpriv")):
        return []
    cpu = max(1, math.ceil(limits.cpu_s))
    nnp = ["setpriv", "--no-new-privs", "--"] if no_new_privs else []
    return [*nnp, "prlimit", f"--as={limits.memory_bytes}", f"--cpu={cpu}:{cpu + 1}",
            f"--fsize={limits.file_bytes}", f"--nproc={nprocs}", f"--nofile={limits.open_files}",
            "--core=0", "--"]


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it


def _set_limits(limits: Limits, nprocs: int, no_new_privs: bool) -> None:
    """In the child, before exec. The soft CPU limit sends SIGXCPU, one second later SIGKILL.
    no_new_privs: set-user-ID programs (su, mount, ...) run without their privileges; bwrap and
    setpriv --no-new-privs set it for the other methods."""
    if no_new_privs:
        _prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    cpu = max(1, int(limits.cpu_s + 0.999))
    for kind, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                        (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_NPROC, nprocs),
                        (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_CORE, 0)):
        soft, hard = value if isinstance(value, tuple) else (value, value)
        resource.setrlimit(kind, (soft, hard))


class _Capture:
    """The first ``limit`` bytes of a stream, plus its last 4 KiB for error detection."""

    def __init__(self, limit: int):
        self.limit, self.data, self.tail, self.truncated = limit, bytearray(), bytearray(), False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
        self.tail = (self.tail + chunk)[-4096:]


def _collect(proc: subprocess.Popen, deadline: float, limit: int,
             watchdog: Callable[[], bool] | None) -> tuple[_Capture, _Capture, bool, bool]:
    """Read stdout and stderr together until both close and the process exits, the deadline
    passes or the watchdog fires. Returns (stdout, stderr, timed_out, stopped_by_watchdog)."""
    out, err = _Capture(limit), _Capture(limit)
    captures = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    selector = selectors.DefaultSelector()
    for fd in captures:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    timed_out = stopped = False
    next_watch = time.monotonic() + 0.1

    def drain(timeout: float) -> None:
        for key, _ in selector.select(timeout):
            try:
                chunk = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                captures[key.fd].add(chunk)
            else:
                selector.unregister(key.fd)

    while True:
        now = time.monotonic()
        if now >= deadline:
            timed_out = proc.poll() is None
            break
        if watchdog is not None and now >= next_watch:
            next_watch = now + 0.1
            if proc.poll() is None and watchdog():
                stopped = True
                break
        step = min(deadline - now, 0.1 if watchdog else 0.05)
        if selector.get_map():
            drain(step)
            if proc.poll() is not None and selector.get_map():
                # Exited but the pipes are still open: a background child holds them. It will be
                # killed with the rest of the tree; read what is already there first.
                drain(0)
                break
        else:
            try:
                proc.wait(timeout=step)
                break
            except subprocess.TimeoutExpired:
                continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    end = time.monotonic() + 1.0
    while selector.get_map() and time.monotonic() < end:
        drain(0.05)
    selector.close()
    proc.stdout.close()
    proc.stderr.close()
    proc.wait()
    return out, err, timed_out, stopped


def _kill_tree(proc: subprocess.Popen, ids: tuple[int, int] | None) -> None:
    """SIGKILL the process group (with bwrap this also ends the pid namespace: its init has
    PR_SET_PDEATHSIG), then every process of the leased uid, which catches ones that left the
    group with setsid()."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if ids:
        _kill_uid(ids)


def _kill_uid(ids: tuple[int, int]) -> None:
    """kill(-1) from a process of that uid reaches every process of it at once (no race with
    fork). Then wait until they are reaped: zombies still count against RLIMIT_NPROC, and orphans
    are reaped by the system's init, which may take a second or two."""
    deadline = time.monotonic() + 5
    while _count_tasks(ids[0]) and time.monotonic() < deadline:
        subprocess.run(["/bin/sh", "-c", "kill -9 -1"], user=ids[0], group=ids[1], extra_groups=[],
                       env={}, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.02)


def _hand_over(scratch: Path, uid: int, gid: int) -> None:
    """Make the scratch dir the sandbox user's. lchown: never follow a link planted there."""
    os.lchown(scratch, uid, gid)
    for root, dirs, files in os.walk(scratch, followlinks=False):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _unreachable(ids: tuple[int, int], paths: list[Path], program: str) -> list[str]:
    """Paths the sandbox uid cannot reach by permissions (for methods without bwrap)."""
    uid, gid = ids
    problems = []
    exe = shutil.which(program) or program
    for path, need in [(p, "r") for p in paths] + [(Path(exe), "x")]:
        path = Path(path).absolute()
        for parent in reversed(path.parents):
            if not _allowed(parent, uid, gid, "x"):
                problems.append(f"{path} (directory {parent} is not searchable)")
                break
        else:
            target = path.resolve()
            if target != path and not all(_allowed(p, uid, gid, "x") for p in target.parents):
                problems.append(f"{path} (it points to {target}, behind a directory it cannot search)")
            elif not _allowed(target, uid, gid, need):
                problems.append(f"{path} (no {need} permission)")
    return problems


def _allowed(path: Path, uid: int, gid: int, need: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    bit = {"r": 4, "w": 2, "x": 1}[need]
    if st.st_uid == uid:
        return bool(st.st_mode >> 6 & bit)
    if st.st_gid == gid:
        return bool(st.st_mode >> 3 & bit)
    return bool(st.st_mode & bit)


def _count_tasks(uid: int) -> int:
    """Tasks (threads) whose real uid is ``uid``, zombies included: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields.get("Threads", "1"))
    return count


# ---------------------------------------------------------------------------------------------
# Memory of the whole tree


class _MemoryGroup:
    """A memory cgroup for one run (v2 where its memory controller is delegated to us, else v1).
    The kernel charges every process of the tree, and the tmpfs pages they write, to it; over
    the limit, its OOM killer stops a process of the group. Root only."""

    V2 = Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")
    V1 = Path("/sys/fs/cgroup/memory")
    _counter = 0
    _lock = __import__("threading").Lock()

    def __init__(self, path: Path, kind: str, limit: int) -> None:
        self.path, self.kind, self.limit = path, kind, limit

    @classmethod
    def create(cls, limit: int) -> "_MemoryGroup | None":
        if os.geteuid() != 0 or os.environ.get("GRADER_NO_CGROUP") == "1":
            return None
        with cls._lock:
            cls._counter += 1
            name = f"run-{os.getpid()}-{cls._counter}"
        for base in cls.V2:
            try:
                if "memory" not in (base / "cgroup.controllers").read_text().split():
                    continue
                parent = base / "grader-sandbox"
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory")
                path = parent / name
                path.mkdir()
                (path / "memory.max").write_text(str(limit))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
                return cls(path, "cgroup v2", limit)
            except OSError:
                continue
        try:
            parent = cls.V1 / "grader-sandbox"
            parent.mkdir(exist_ok=True)
            path = parent / name
            path.mkdir()
            (path / "memory.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(OSError):
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
            return cls(path, "cgroup v1", limit)
        except OSError:
            return None

    def wrapper(self) -> list[str]:
        """Runs first, as root: joins the group, then execs the rest (children inherit it)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.path)]

    def exceeded(self) -> bool:
        try:
            if self.kind == "cgroup v2":
                events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0 or int(events.get("oom", 0)) > 0
            control = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
            if "oom_kill" in control:
                return int(control["oom_kill"]) > 0
            return int((self.path / "memory.max_usage_in_bytes").read_text()) >= self.limit * 0.98
        except (OSError, ValueError):
            return False

    def remove(self) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pids = (self.path / "cgroup.procs").read_text().split()
            except OSError:
                pids = []
            for pid in pids:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


class _TreeMemory:
    """Without a cgroup: the resident memory of every process of the run (its uid, or its
    descendants), summed ten times a second. A spike between two polls is still bounded by
    the per-process RLIMIT_AS."""

    def __init__(self, limit: int, ids: tuple[int, int] | None) -> None:
        self.limit, self.ids, self.root = limit, ids, None

    def exceeded(self) -> bool:
        total, children = 0, {}
        stats = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            pid, ppid = int(entry.name), int(fields.get("PPid", "0").split()[0] or 0)
            rss = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024 if "VmRSS" in fields else 0
            uid = int(fields["Uid"].split()[0])
            stats.append((pid, ppid, uid, rss))
            children.setdefault(ppid, []).append(pid)
        if self.ids:
            total = sum(rss for _, _, uid, rss in stats if uid == self.ids[0])
        elif self.root:
            rss_of = {pid: rss for pid, _, _, rss in stats}
            todo, seen = [self.root], set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                total += rss_of.get(pid, 0)
                todo.extend(children.get(pid, []))
        return total > self.limit
