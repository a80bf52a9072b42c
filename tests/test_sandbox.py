"""The grader's isolation primitive keeps each promise it makes, for every method that works here.

Each test runs once per available method. A test is skipped only where GUARANTEES says the method
does not promise that property (weaker fallbacks, documented); the first test fails loudly when no
strong method is available, so CI cannot pass on a machine without isolation.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from solutions.grading import sandbox as sb
from solutions.grading.sandbox import GUARANTEES, Limits, run_sandboxed

ROOT = os.geteuid() == 0
# As root (CI) the strongest method must work; `.ci/run` installs bubblewrap. Without root, the
# user-namespace bwrap is the best there is. GRADER_SANDBOX_REQUIRE can name another on purpose.
REQUIRED = os.environ.get("GRADER_SANDBOX_REQUIRE", "bwrap+uid" if ROOT else "bwrap")

if ROOT:
    sb.ensure_sandbox_user(count=2)  # grader-sandbox and grader-sandbox-2: two runs at once
METHODS = sb.available_methods()


def test_a_strong_method_is_available():
    assert METHODS, "not even rlimit-only works"
    assert REQUIRED in METHODS, (
        f"sandbox method {REQUIRED!r} does not work here (available: {METHODS}). "
        "Install bubblewrap (apt-get install -y bubblewrap) and run as root, or set "
        "GRADER_SANDBOX_REQUIRE to the method this machine is meant to use.")
    assert METHODS[0] in ("bwrap+uid", "bwrap", "uid+netns", "uid")


@pytest.fixture(params=METHODS)
def method(request):
    return request.param


def promised(method: str, what: str) -> None:
    value = GUARANTEES[method][what]
    if value == "non-root caller":
        value = not ROOT
    if not value:
        pytest.skip(f"{method} does not promise {what} (documented in sandbox.py)")


@pytest.fixture
def place():
    """A world-searchable base with a scratch dir and a 'course' dir only root can enter."""
    base = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    base.chmod(0o755)
    (base / "scratch").mkdir()
    course = base / "course"
    course.mkdir(mode=0o700)
    (course / "gradebook.db").write_text("SECRET-GRADES")
    (base / "outside").mkdir(mode=0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def python_for(method: str) -> tuple[str, list[Path]]:
    """An interpreter the sandbox user can run, and the paths to mount for it."""
    if method.startswith("bwrap") or method == "rlimit-only":
        return sys.executable, sb.python_paths()
    ids = sb.sandbox_ids()
    for python in (sys.executable, "/usr/bin/python3"):
        if Path(python).exists() and not sb._unreachable(ids, [], python):
            return python, []
    pytest.skip(f"{method}: no python here that user {sb.SANDBOX_USER} may run (this method relies on "
                "file permissions; see SANDBOX.md)")


def run_py(method, place, code, limits=Limits(wall_s=20), **kw):
    python, readable = python_for(method)
    return run_sandboxed([python, "-c", textwrap.dedent(code)], place / "scratch", limits,
                         readable=readable, method=method, **kw)


def processes_with(token: str) -> list[int]:
    """Live (not zombie) processes whose command line holds token."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if token.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def test_runs_a_command_with_a_minimal_environment(method, place, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    result = run_py(method, place, """
        import os, sys
        open(os.path.join(os.environ["HOME"], "by-absolute-path"), "w").write("ok")
        print(sys.stdin.read().upper(), os.environ["HOME"], os.getcwd(), "SECRET_TOKEN" in os.environ)
        assert os.environ["EXTRA"] == "1"
        """, stdin=b"hello", env={"EXTRA": "1"})
    assert result.returncode == 0, result.stderr
    scratch = str((place / "scratch").resolve())
    assert result.stdout.split() == [b"HELLO", scratch.encode(), scratch.encode(), b"False"]
    assert (place / "scratch" / "by-absolute-path").read_text() == "ok"
    assert result.method == method and not result.timed_out and result.killed_by_signal is None
    assert result.wall_s < 10


def test_wall_limit_kills_the_whole_tree(method, place):
    token = f"sandbox-test-{uuid.uuid4().hex}"
    code = f"""
        import subprocess, sys, os, time
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)", "{token}"]
        a = subprocess.Popen(sleeper)                            # stays in the process group
        b = subprocess.Popen(sleeper, start_new_session=True)    # leaves it with setsid()
        while len(open("/proc/%d/cmdline" % b.pid, "rb").read()) < 10: time.sleep(0.01)
        print("ready", flush=True)
        while True: pass
        """
    try:
        result = run_py(method, place, code, Limits(wall_s=2))
        assert result.timed_out and result.killed_by_signal == signal.SIGKILL
        assert b"ready" in result.stdout, result.stderr
        assert 2 <= result.wall_s < 6
        survivors = processes_with(token)
        if GUARANTEES[method]["dedicated_uid"] or method.startswith("bwrap"):
            assert survivors == []
        else:  # rlimit-only: the process group is gone, but not what left it
            assert len(survivors) <= 1
    finally:
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)


def test_cpu_limit(method, place):
    result = run_py(method, place, "while True: pass", Limits(wall_s=20, cpu_s=1))
    assert not result.timed_out
    assert result.killed_by_signal in (signal.SIGXCPU, signal.SIGKILL)


def test_fork_bomb_is_contained(method, place):
    promised(method, "nprocs")
    # Bounded at 200 so that a method that failed to contain it cannot take the machine down.
    result = run_py(method, place, """
        import os, time
        n = 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(30); os._exit(0)
                n += 1
            except OSError:
                break
        print(n, flush=True)
        """, Limits(wall_s=20, nprocs=20))
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 20


def test_memory_hog_is_stopped(method, place):
    result = run_py(method, place, "x = bytearray(3 * 2**30); print('allocated')",
                    Limits(wall_s=20, memory_bytes=1 * 2**30))
    assert result.returncode != 0 and b"allocated" not in result.stdout
    assert result.oom_suspected, result.stderr


def test_huge_output_is_capped_without_deadlock(method, place):
    result = run_py(method, place, """
        import sys
        chunk = b"x" * 2**20
        for _ in range(200):                 # 200 MiB on each stream
            sys.stdout.buffer.write(chunk); sys.stderr.buffer.write(chunk)
        print("end", flush=True)
        """, Limits(wall_s=30, output_bytes=2**16))
    assert result.returncode == 0 and not result.timed_out
    assert len(result.stdout) == len(result.stderr) == 2**16
    assert result.stdout_truncated and result.stderr_truncated


def test_writes_only_to_scratch(method, place):
    promised(method, "filesystem")
    outside = place / "outside" / "planted.txt"
    private = Path("/tmp") / f"sandbox-private-{uuid.uuid4().hex}"
    course = place / "course" / "gradebook.db"
    result = run_py(method, place, f"""
        import os
        open("mine.txt", "w").write("ok")
        for target in [{str(outside)!r}, {str(course)!r}, "/usr/planted", "/etc/planted"]:
            try:
                open(target, "w").write("pwned"); print("WROTE", target)
            except OSError as e:
                print("refused", target, type(e).__name__)
        open({str(private)!r}, "w").write("tmp is private")
        try:
            open("big", "wb").write(bytes(2 * 2**20)); print("WROTE a file over the limit")
        except OSError as e:
            print("refused big file", e.strerror)
        """, Limits(wall_s=20, file_bytes=2**20))
    assert result.returncode == 0, result.stderr
    assert b"WROTE" not in result.stdout
    assert (place / "scratch" / "mine.txt").read_text() == "ok"
    assert not outside.exists() and course.read_text() == "SECRET-GRADES"
    assert not Path("/usr/planted").exists() and not Path("/etc/planted").exists()
    if GUARANTEES[method]["private_tmp"]:
        assert not private.exists()
    else:
        private.unlink()


def test_cannot_read_forbidden_files(method, place):
    promised(method, "filesystem")
    course = place / "course"
    other = place / "outside" / "other-student.ipynb"
    other.write_text("ANOTHER-STUDENT")
    other.chmod(0o600)
    repo = Path(__file__).resolve().parents[1]
    result = run_py(method, place, f"""
        import os
        for target in [{str(course / 'gradebook.db')!r}, {str(other)!r}, "/etc/shadow"]:
            try:
                print("GOT", open(target).read())
            except OSError as e:
                print("refused", target, type(e).__name__)
        try:
            print("REPO", *os.listdir({str(repo)!r}))
        except OSError as e:
            print("refused", "repo", type(e).__name__)
        """)
    assert result.returncode == 0, result.stderr
    assert b"SECRET" not in result.stdout and b"ANOTHER" not in result.stdout
    assert b"GOT" not in result.stdout
    if GUARANTEES[method]["filesystem"] == "mounts":
        # Only what was mounted exists: of the clone, at most the skeleton leading to its venv.
        listed = [line.split()[1:] for line in result.stdout.decode().splitlines() if line.startswith("REPO")]
        assert listed == [] or set(listed[0]) <= {".venv"}, listed
    forbidden = [course / "gradebook.db", course, other]
    assert sb.readable_inside(forbidden, place / "scratch", method=method) == []


def test_network_is_denied(method, place):
    promised(method, "network")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        result = run_py(method, place, f"""
            import socket
            for host in ["127.0.0.1", "1.1.1.1"]:
                s = socket.socket(); s.settimeout(3)
                print(host, s.connect_ex((host, {port})))
            """)
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    codes = dict(line.split() for line in result.stdout.decode().splitlines())
    assert codes["127.0.0.1"] != "0" and codes["1.1.1.1"] != "0"


def test_exit_status_and_signals_are_reported(method, place):
    exited = run_py(method, place, "import os; os._exit(7)")
    assert exited.returncode == 7 and exited.killed_by_signal is None and not exited.timed_out
    killed = run_py(method, place, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.killed_by_signal == signal.SIGKILL and killed.returncode == -signal.SIGKILL
    assert not killed.timed_out and not killed.oom_suspected


def test_the_strongest_method_is_the_default(place):
    result = run_sandboxed(["/bin/sh", "-c", "echo hi"], place / "scratch", Limits(wall_s=10))
    assert result.method == METHODS[0] and result.stdout == b"hi\n"


def test_methods_with_a_sandbox_user_refuse_paths_it_cannot_read(place):
    methods = [m for m in METHODS if GUARANTEES[m]["dedicated_uid"]]
    if not methods:
        pytest.skip("no method with a dedicated uid here")
    for method in methods:
        with pytest.raises(sb.SandboxError, match="cannot reach"):
            run_sandboxed(["/bin/true"], place / "scratch", readable=[place / "course"], method=method)


@pytest.mark.slow
def test_jupyter_kernel_with_torch_runs_inside(place):
    """The grader's real workload: nbclient starts an ipykernel inside the sandbox (its ZeroMQ
    sockets use the sandbox's own loopback) and the notebook imports torch, within the default
    limits. This needs the venv mounted, which only the bwrap methods do for a venv under /root."""
    method = METHODS[0]
    if not method.startswith("bwrap"):
        pytest.skip(f"{method}: the venv is not reachable by permissions here (see SANDBOX.md)")
    import nbformat

    scratch = place / "scratch"
    cells = ["import torch, os; print(torch.ones(3).sum().item(), os.getuid())",
             "import socket; s = socket.socket(); s.settimeout(2); print(s.connect_ex(('1.1.1.1', 80)))"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]),
                   scratch / "nb.ipynb")
    runner = textwrap.dedent("""
        import nbformat
        from nbclient import NotebookClient
        nb = nbformat.read("nb.ipynb", as_version=4)
        NotebookClient(nb, timeout=60, kernel_name="python3").execute()
        nbformat.write(nb, "out.ipynb")
        """)
    result = run_sandboxed([sys.executable, "-c", runner], scratch, Limits(), readable=sb.python_paths(),
                           method=method)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = nbformat.read(scratch / "out.ipynb", as_version=4)
    first, second = (cell.outputs[0]["text"].split() for cell in out.cells)
    assert first[0] == "3.0" and (first[1] != "0" or method == "bwrap")
    assert second[0] != "0"  # no route out
    assert result.wall_s < 30


def test_concurrent_runs_lease_their_own_uid(place):
    """A run ends by killing every process of its uid; a second run at the same time must
    therefore get another uid from the pool, and survive the first one's end."""
    from concurrent.futures import ThreadPoolExecutor

    dedicated = [m for m in METHODS if GUARANTEES[m]["dedicated_uid"]]
    if not dedicated:
        pytest.skip("no method with a dedicated uid here")
    if len(sb._pool(sb.SANDBOX_USER)) < 2:
        pytest.skip("only one sandbox user (ensure_sandbox_user(count=2) needs root)")
    method = dedicated[0]
    (place / "a").mkdir()
    (place / "b").mkdir()
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(run_sandboxed, ["/bin/sh", "-c", "id -u; sleep 1.5; echo survived"], place / "a",
                           Limits(wall_s=10), method=method)
        time.sleep(0.2)
        short = pool.submit(run_sandboxed, ["/bin/sh", "-c", "id -u; sleep 10"], place / "b",
                            Limits(wall_s=0.5), method=method)
        slow, short = slow.result(), short.result()
    assert short.timed_out
    assert slow.returncode == 0 and slow.stdout.split()[1] == b"survived", slow
    assert slow.stdout.split()[0] != short.stdout.split()[0]


def test_watchdog_can_stop_a_run(place):
    start = time.monotonic()
    result = run_sandboxed(["/bin/sh", "-c", "sleep 30"], place / "scratch", Limits(wall_s=20),
                           watchdog=lambda: time.monotonic() - start > 0.5)
    assert result.killed_by_signal == signal.SIGKILL and not result.timed_out
    assert result.wall_s < 3 and any("watchdog" in n for n in result.notes)


def test_weak_fallback_says_so(place, monkeypatch):
    monkeypatch.setattr(sb, "available_methods", lambda user=sb.SANDBOX_USER: ["rlimit-only"])
    result = run_sandboxed(["/bin/true"], place / "scratch", Limits(wall_s=10))
    assert result.returncode == 0
    assert result.method == "rlimit-only" and "no isolation" in result.notes[0]


def test_unknown_or_unavailable_method_is_refused(place):
    with pytest.raises(sb.SandboxError):
        run_sandboxed(["/bin/true"], place / "scratch", method="chroot")


# --- per-run bounds on the whole submission, and the grader's pipes (issue 8) ------------------


def test_disk_limit_bounds_the_scratch_dir(method, place):
    promised(method, "disk")
    result = run_py(method, place, """
        import errno, os
        written = 0
        try:
            for i in range(100):
                with open(os.path.join(os.environ["HOME"], f"f{i}"), "wb") as f:
                    f.write(b"x" * 2**20)
                written += 1
        except OSError as e:
            print("stopped", written, e.errno == errno.ENOSPC)
        """, Limits(wall_s=20, disk_bytes=16 * 2**20))
    assert result.stdout.split()[0] == b"stopped", result.stderr
    assert int(result.stdout.split()[1]) <= 16 and result.stdout.split()[2] == b"True"
    assert not list((place / "scratch").iterdir()), "the bounded scratch is private to the run"


MEMORY_TREE = """
import subprocess, sys
code = "b = b'x' * (300 * 2**20); import time; time.sleep(30)"
procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
for p in procs:
    p.wait()
"""


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup-if-any", "polled"])
def test_total_memory_of_the_tree_is_bounded(place, monkeypatch, cgroup):
    """Four processes of 300 MiB each, each well under the per-process limit, together over
    the total: the run is stopped, and the result says so and how it was bounded."""
    if not cgroup:
        monkeypatch.setenv("GRADER_NO_CGROUP", "1")
    method = METHODS[0]
    python, readable = python_for(method)
    result = run_sandboxed([python, "-c", MEMORY_TREE], place / "scratch",
                           Limits(wall_s=40, memory_bytes=2 * 2**30, total_memory_bytes=700 * 2**20),
                           readable=readable, method=method)
    assert result.memory_exceeded, (result.notes, result.stderr[-500:])
    assert result.wall_s < 30
    assert result.memory_bound in (("cgroup v1", "cgroup v2", "polled") if cgroup else ("polled",))
    assert any("memory" in n for n in result.notes)


def test_under_the_total_memory_nothing_is_stopped(place):
    method = METHODS[0]
    python, readable = python_for(method)
    result = run_sandboxed([python, "-c", "b = b'x' * (100 * 2**20); print('ok')"], place / "scratch",
                           Limits(wall_s=30, total_memory_bytes=1 << 30), readable=readable, method=method)
    assert result.returncode == 0 and result.stdout == b"ok\n" and not result.memory_exceeded


def test_pipes_passed_in_stay_open_inside(method, place):
    read_end, write_end = os.pipe()
    try:
        result = run_py(method, place, f"import os; os.write({write_end}, b'through the pipe')",
                        pass_fds=(write_end,))
        assert result.returncode == 0, result.stderr
        os.set_blocking(read_end, False)
        assert os.read(read_end, 100) == b"through the pipe"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_mounts_cover_a_path_read_only(place):
    if not any(m.startswith("bwrap") for m in METHODS):
        pytest.skip("mounts need bwrap")
    method = next(m for m in METHODS if m.startswith("bwrap"))
    real = place / "outside" / "pkg"
    real.mkdir()
    (real / "secret.py").write_text("REFERENCE = 1\n")
    cover = place / "outside" / "cover"
    cover.mkdir()
    (cover / "public.py").write_text("PUBLIC = 1\n")
    for p in (real / "secret.py", cover / "public.py"):
        p.chmod(0o644)
    result = run_sandboxed(["/bin/ls", str(real)], place / "scratch", Limits(wall_s=20), method=method,
                           readable=[real], mounts=[(cover, real)])
    assert result.stdout.split() == [b"public.py"], result.stderr
