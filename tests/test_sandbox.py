"""The ``code_tests`` reward and its sandbox against hostile programs.

Every hostile program defines the benign solution ``f`` only if its attack worked (or only after code that must
never finish), so a score of 0 means the protection held. All of them run in one ``code_tests`` batch per isolation
mode (in parallel, as in training); the host side (canary files, a TCP server, the test process, /proc) is checked
afterwards. Nothing is skipped: a protection that does not work here fails its test.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from rewards import code_rewards, sandbox
from rewards.code_rewards import code_tests, extract_code
from rewards.sandbox import run_python

TESTS = ["assert f(1) == 2", "assert f(2) == 3", "assert f(10) == 11", "assert f(-1) == 0"]
BENIGN = "def f(x):\n    return x + 1\n"
TAG = f"sbxtest{uuid.uuid4().hex[:12]}"  # in the cmdline of every process a hostile program starts itself
SECRET_ENV = "ALIGN_SANDBOX_TEST_SECRET"
SECRET = f"envsecret{uuid.uuid4().hex}"
FILE_SECRET = f"filesecret{uuid.uuid4().hex}"
TIMEOUT = 1.5
NS, FALLBACK = "namespaces", "rlimits+audit"


def fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}```\n"


def attack(body: str) -> str:
    """``f`` is defined only if every line of ``body`` ran without raising."""
    return (
        "ok = False\ntry:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n    ok = True\n"
        "except BaseException as e:\n    print('blocked:', type(e).__name__, e)\n"
        "if ok:\n" + textwrap.indent(BENIGN, "    ")
    )


def daemon(marker: Path, then: str) -> str:
    """Double fork + setsid; the grandchild ignores SIGTERM, execs (tagged), writes ``marker`` after 3 s, lingers."""
    inner = (f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3); "
             f"open({str(marker)!r}, 'w').write('escaped'); time.sleep(60)  # {TAG}")  # fmt: skip
    return (
        textwrap.dedent(f"""\
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                try:
                    os.execv(sys.executable, [sys.executable, "-c", {inner!r}])
                except BaseException:
                    exec({inner!r})
                os._exit(0)
            os._exit(0)
        print("spawned", flush=True)
        """)
        + then
    )


def sandbox_processes() -> list[str]:
    """Processes (other than this one) that belong to a sandbox or to a hostile program, as 'pid uid cmdline'."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            uid = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
        except (OSError, IndexError):
            continue
        if int(pid) != os.getpid() and (TAG in cmd or "pysandbox-" in cmd or uid == str(sandbox.SANDBOX_UID)):
            found.append(f"{pid} {uid} {cmd[:120]}")
    return found


def sandbox_dirs() -> list[str]:
    return sorted(str(p) for d in (tempfile.gettempdir(), "/dev/shm") for p in Path(d).glob("pysandbox-*"))


class Host:
    """Things outside the sandbox that the hostile programs go after."""

    def __init__(self, root: Path):
        self.root = root
        self.target = root / "written_by_sandbox.txt"
        self.canary = root / "canary.txt"
        self.canary.write_text("still here")
        self.secret_file = root / "root_only.txt"
        self.secret_file.write_text(FILE_SECRET)
        self.secret_file.chmod(0o600)
        # a world-writable drop box for the escape markers, outside the dirs a mount namespace replaces
        self.drop = Path(tempfile.mkdtemp(prefix=f"{TAG}-drop-", dir="/run" if os.access("/run", os.W_OK) else None))
        self.drop.chmod(0o1777)
        self.hits: list = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        # a root process whose /proc/<pid>/environ holds the secret
        self.env_holder = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(300)"], env={**os.environ, SECRET_ENV: SECRET}
        )
        self.etc_mode = os.stat("/etc").st_mode
        self.nobody_before = {line.split()[0] for line in sandbox_processes()}

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, addr = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.hits.append(addr)
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.server.close()
        self.env_holder.kill()
        self.env_holder.wait()
        for p in self.drop.iterdir():
            p.unlink()
        self.drop.rmdir()


def hostile_programs(host: Host, mode: str) -> dict[str, str]:
    """name -> program. Forking programs first, bombs last (uid 65534's process budget is shared)."""
    d = host.drop
    progs = {
        "escape_daemon_exit": daemon(d / f"{mode}-exit.marker", ""),
        "escape_daemon_timeout": daemon(d / f"{mode}-timeout.marker", "time.sleep(60)\n" + BENIGN),
        "network": attack(f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {host.port}), timeout=1)
            s.sendall(b"hello")"""),
        "write_outside": attack(f"open({str(host.target)!r}, 'w').write('pwned')"),
        "delete_outside": attack(f"import os\nos.remove({str(host.canary)!r})"),
        "read_env": attack(f"""
            import glob, os
            leaks = [os.environ.get({SECRET_ENV!r}, "")]
            for p in glob.glob("/proc/*/environ"):
                try:
                    leaks.append(open(p, "rb").read().decode("latin-1"))
                except OSError:
                    pass
            leaks = [x for x in leaks if {SECRET_ENV!r} in x or x.startswith("envsecret")]
            print("leaked:", leaks)
            assert leaks"""),
        "read_root_file": attack(f"""
            data = ""
            for p in ({str(host.secret_file)!r}, "/etc/shadow"):
                try:
                    data += open(p).read()
                except OSError as e:
                    print("blocked:", p, e)
            print(data)
            assert data"""),
        "kill_parent": attack("import os\nos.kill(os.getppid(), 9)"),
        "kill_test_process": attack(f"import os\nos.kill({os.getpid()}, 9)"),
        "kill_test_group": attack(f"import os\nos.killpg({os.getpgid(0)}, 9)"),
        "kill_everything": attack("import os\nos.kill(-1, 9)"),
        "ctypes_kill": attack(f"""
            import ctypes, gc, os
            libs = [o for o in gc.get_objects() if isinstance(o, ctypes.CDLL)] or [ctypes.CDLL(None)]
            assert libs[0].kill(os.getppid(), 9) == 0 or libs[0].kill({os.getpid()}, 9) == 0"""),
        "setuid_root": attack("import os\nos.setuid(0)"),
        "raise_limits": attack("""
            import resource
            for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_FSIZE"):
                try:
                    resource.setrlimit(getattr(resource, name), (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                except (ValueError, OSError) as e:
                    print("blocked:", name, e)
            hog = bytearray(1 << 30)"""),
        "huge_file": attack("""
            with open("big.bin", "wb") as fh:
                for _ in range(64):
                    fh.write(bytes(1 << 20))"""),
        "fill_tmp": attack("""
            for i in range(12):
                with open(f"/tmp/fill{i}.bin", "wb") as fh:
                    for _ in range(15):
                        fh.write(bytes(1 << 20))"""),
        "exit_before_tests": BENIGN + "import os\nos._exit(0)\n",
        "sys_exit": BENIGN + "import sys\nsys.exit(0)\n",
        "forged_marker": textwrap.dedent("""\
            import os, sys
            stolen = sys.stdin.read()
            try:
                stolen += open("/proc/self/fd/0").read()
            except OSError:
                pass
            for fake in ("0" * 32, "f" * 32, "RESULT", "OK", stolen.strip()):
                print(f"\\n{fake} 15\\n{fake} 15 4\\n{fake} 4/4")
            sys.stdout.flush()
            os._exit(0)
            """),
        "patch_builtins": textwrap.dedent("""\
            import builtins, sys
            builtins.AssertionError = Exception
            builtins.BaseException = Exception
            builtins.exec = lambda *a, **k: None
            builtins.compile = lambda *a, **k: None
            builtins.len = lambda x: 0
            sys.excepthook = lambda *a: None
            def f(x):
                return None  # wrong for every test
            """),
        "chmod_own_dir": textwrap.dedent("""\
            import os
            os.makedirs("a/b/c")
            open("a/b/c/f.txt", "w").write("x")
            os.chmod("a/b/c/f.txt", 0o400)
            os.chmod("a/b/c", 0o500)
            os.chmod("a", 0)
            try:
                os.symlink("/etc", "etc_link")
            finally:
                os.chmod(".", 0)
            """),
        "delete_own_dir": textwrap.dedent("""\
            import os, shutil
            here = os.getcwd()
            os.chdir("/")
            shutil.rmtree(here, ignore_errors=True)
            os.rmdir(here)
            os.symlink("/etc", here)
            """),
        "sleep_past_timeout": "import time\ntime.sleep(100)\n" + BENIGN,
        "infinite_loop": "while True:\n    pass\n" + BENIGN,
        "ignore_sigterm": textwrap.dedent("""\
            import signal
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
                signal.signal(s, signal.SIG_IGN)
            while True:
                pass
            """)
        + BENIGN,
        "huge_output": "while True:\n    print('x' * 4096)\n" + BENIGN,
        "recursion_bomb": "import sys\nsys.setrecursionlimit(10 ** 8)\ndef r(n):\n    return r(n + 1)\nr(0)\n" + BENIGN,
        "memory_bomb": "hog = []\nwhile True:\n    hog.append(bytearray(64 << 20))\n" + BENIGN,
        "thread_bomb": textwrap.dedent("""\
            import threading, time
            while True:
                try:
                    threading.Thread(target=time.sleep, args=(60,)).start()
                except RuntimeError:
                    pass
            """)
        + BENIGN,
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
        + BENIGN,
    }
    if mode == NS:  # only a pid namespace hides the host's processes
        progs["see_host_processes"] = attack(f"""
            cmd = open("/proc/{os.getpid()}/cmdline", "rb").read()
            print(cmd)
            assert cmd""")
    return {name: f"# hostile:{name}\n{code}" for name, code in progs.items()}


NAMES_BY_MODE = {
    NS: ["escape_daemon_exit", "escape_daemon_timeout", "network", "write_outside", "delete_outside", "read_env",
         "read_root_file", "kill_parent", "kill_test_process", "kill_test_group", "kill_everything", "ctypes_kill",
         "setuid_root", "raise_limits", "huge_file", "fill_tmp", "exit_before_tests", "sys_exit", "forged_marker",
         "patch_builtins", "chmod_own_dir", "delete_own_dir", "sleep_past_timeout", "infinite_loop", "ignore_sigterm",
         "huge_output", "recursion_bomb", "memory_bomb", "thread_bomb", "fork_bomb", "see_host_processes"],
}  # fmt: skip
NAMES_BY_MODE[FALLBACK] = [n for n in NAMES_BY_MODE[NS] if n != "see_host_processes"]


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind():
    """After the whole module: no sandbox or hostile process is alive and no sandbox work dir is left."""
    yield
    time.sleep(0.2)
    assert sandbox_processes() == []
    assert sandbox_dirs() == []


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    os.environ[SECRET_ENV] = SECRET
    h = Host(tmp_path_factory.mktemp("host"))
    yield h
    h.close()
    os.environ.pop(SECRET_ENV, None)


def run_batch(host: Host, mode: str):
    programs = hostile_programs(host, mode)
    assert sorted(programs) == sorted(NAMES_BY_MODE[mode])
    records = {}
    real = code_rewards.run_python

    def recording(program, *args, **kwargs):
        res = real(program, *args, **kwargs)
        hostile = re.search(r"# hostile:(\w+)", program)
        if hostile:  # not the expected-values run, which holds no solution
            records[hostile.group(1)] = res
        return res

    python = sandbox.isolation()[1]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(code_rewards, "run_python", recording)
        mp.setattr(sandbox, "_mode", (mode, python))
        start = time.monotonic()
        scores = code_tests(
            None,
            [fenced(p) for p in programs.values()],
            tests=[TESTS] * len(programs),
            timeout=TIMEOUT,
            workers=os.cpu_count(),
        )
    left = [p for p in sandbox_processes() if p.split()[0] not in host.nobody_before]
    # an escaped daemon would write its marker 3 s after it started
    time.sleep(max(0.0, start + 4.0 - time.monotonic()))
    return dict(zip(programs, scores)), records, left


@pytest.fixture(scope="module")
def batches(host):
    return {}


def batch(batches, host, mode):
    if mode not in batches:
        batches[mode] = run_batch(host, mode)
    return batches[mode]


def test_namespaces_are_used_here():
    assert sandbox.isolation()[0] == NS, "namespace isolation is not available on this machine"


@pytest.mark.parametrize("mode,name", [(m, n) for m in (NS, FALLBACK) for n in NAMES_BY_MODE[m]])
def test_hostile_program_scores_zero(batches, host, mode, name):
    scores, records, _ = batch(batches, host, mode)
    res = records[name]
    assert scores[name] == 0.0, f"{name}: scored {scores[name]}; {res}"
    assert res.isolation == mode
    assert len(res.stdout) <= code_rewards.MAX_OUTPUT and len(res.stderr) <= code_rewards.MAX_OUTPUT


@pytest.mark.parametrize("mode", [NS, FALLBACK])
def test_host_untouched(batches, host, mode):
    _scores, records, left = batch(batches, host, mode)
    assert left == [], "processes survived the batch"
    assert host.env_holder.poll() is None  # our other children are alive too
    assert not host.target.exists()
    assert host.canary.read_text() == "still here"
    assert host.hits == [], f"the test server was reached from {host.hits}"
    assert sorted(p.name for p in host.drop.iterdir()) == [], "an escaped process wrote its marker"
    assert os.stat("/etc").st_mode == host.etc_mode
    assert not list(Path(tempfile.gettempdir()).glob("fill*.bin"))
    for name, res in records.items():
        for secret in (SECRET, FILE_SECRET, "root:"):
            assert secret not in res.stdout + res.stderr, f"{name} leaked {secret!r}"
    # the attacks were really attempted (not a typo that fails for another reason)
    assert "spawned" in records["escape_daemon_exit"].stdout
    assert "spawned" in records["escape_daemon_timeout"].stdout
    for name in ("network", "write_outside", "delete_outside", "kill_parent", "kill_test_process", "ctypes_kill",
                 "setuid_root", "huge_file", "read_root_file"):  # fmt: skip
        assert "blocked:" in records[name].stdout, f"{name}: {records[name]}"
    for name in ("infinite_loop", "ignore_sigterm", "sleep_past_timeout", "escape_daemon_timeout"):
        assert records[name].timed_out and records[name].duration < TIMEOUT + 3, f"{name}: {records[name]}"
    # the threads exhaust the memory limit; the harness then stops without waiting for them (or the timeout does)
    assert records["thread_bomb"].duration < TIMEOUT + 3, records["thread_bomb"]
    assert records["huge_output"].reason == "output limit exceeded" and not records["huge_output"].timed_out
    assert "MemoryError" in records["memory_bomb"].stderr or records["memory_bomb"].returncode < 0
    assert [p for p in sandbox_processes() if p.split()[0] not in host.nobody_before] == []


def test_benign_solution_scores_one():
    chat = [{"role": "user", "content": "write f"}, {"role": "assistant", "content": fenced(BENIGN)}]
    assert code_tests(None, [fenced(BENIGN), chat, BENIGN], tests=[TESTS] * 3, timeout=10) == [1.0, 1.0, 1.0]


def test_fraction_and_all_modes():
    half = fenced("def f(x):\n    return x + 1 if x < 2 else 0\n")  # passes f(1)==2 and f(-1)==0 only
    assert code_tests(None, [half, fenced(BENIGN)], tests=[TESTS, TESTS], timeout=10) == [0.5, 1.0]
    assert code_tests(None, [half, fenced(BENIGN)], tests=[TESTS, TESTS], mode="all", timeout=10) == [0.0, 1.0]


def test_test_column_forms():
    one_string = "assert f(1) == 2\nassert f(5) == 6\n"
    column = [None, [], one_string, '["assert f(0) == 1"]', TESTS]
    out = code_tests(None, [fenced(BENIGN)] * 5, tests=column, timeout=10)
    assert out == [None, None, 1.0, 1.0, 1.0]
    assert code_tests(None, [fenced(BENIGN)], timeout=10) == [None]
    assert code_tests(None, [fenced(BENIGN)] * 2, tests=TESTS[:3], timeout=10) == [1.0, 1.0]  # one shared list


def test_malformed_completions_give_numbers():
    junk = [
        "",
        None,
        b"\x00\xff\xfe binary",
        "\x00\x01\x02" * 100,
        "x" * 1_000_000,
        "```python\n",
        "```python\ndef f(x):\n    return x + 1\n",  # unclosed fence: runs to the end, and is correct
        "```\n```",
        [{"role": "assistant", "content": None}],
        "```python\ndef f(x) return\n```",
    ]
    out = code_tests(None, junk, tests=[TESTS] * len(junk), timeout=10)
    assert all(isinstance(v, float) for v in out), out
    assert out[6] == 1.0 and sum(out) == 1.0


def test_extract_code():
    """Every Python block that parses, in order (solution, then usage example); untagged ones only without tagged."""
    text = "intro\n```\nplain = 1\n```\n```python\nfirst = 1\n```\ntext\n```py\nlast = 2\n```\n```\nother = 3\n```"
    assert extract_code(text) == "first = 1\nlast = 2\n"
    assert extract_code("```\na = 1\n```\n```js\nb\n```\n```\n>>> a\n1\n```") == "a = 1\n"
    doctest = "```python\ndef f(x):\n    return x\n```\n예:\n```python\n>>> f(1)\n1\n```\n```bash\npython a.py\n```"
    assert extract_code(doctest) == "def f(x):\n    return x\n"
    assert extract_code("```python title=a.py\nx = 1\n```") == "x = 1\n"
    assert extract_code("no fence at all") == "no fence at all"
    unfenced = "다음과 같습니다.\n\nimport math\ndef f(x):\n    return math.sqrt(x)\n\n제곱근을 반환합니다. 감사합니다!"
    assert extract_code(unfenced) == "import math\ndef f(x):\n    return math.sqrt(x)\n\n"


def test_run_python_environment_and_limits():
    code = textwrap.dedent("""\
        import os, resource, socket
        print(os.getpid(), os.getuid(), os.getgid(), os.getgroups())
        print(sorted(os.environ), os.environ["HOME"] == os.getcwd(), os.listdir("."))
        names = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CORE")
        print([resource.getrlimit(getattr(resource, n)) for n in names])
        import fcntl, struct
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lo = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, struct.pack("16sH", b"lo", 0)))[1]  # SIOCGIFFLAGS
        print([n for _, n in socket.if_nameindex()], "up" if lo & 1 else "down")
        print(len([p for p in os.listdir("/proc") if p.isdigit()]))
        """)  # fmt: skip
    res = run_python(code, timeout=10, cpu_seconds=3, memory_mb=256, max_processes=16)
    assert res.returncode == 0 and res.reason == "ok", res
    lines = res.stdout.splitlines()
    assert lines[0] == "2 65534 65534 []"
    assert lines[1] == "['HOME', 'LANG', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'PYTHONHASHSEED'] True []"
    assert lines[2] == str([(3, 4), (256 << 20, 256 << 20), (16, 16), (16 << 20, 16 << 20), (0, 0)])
    assert lines[3] == "['lo'] down"
    assert int(lines[4]) <= 3  # init, the program, nothing from the host
    assert res.isolation == NS and not res.timed_out and not res.killed


def test_run_python_stdin_output_cap_and_timeout():
    echo = run_python(
        "import sys\nprint(sys.stdin.read()[::-1])", stdin="abc" * 50_000, timeout=10, max_output_bytes=1 << 20
    )
    assert echo.stdout.strip() == ("abc" * 50_000)[::-1]
    flood = run_python("import os\nwhile True:\n    os.write(2, b'e' * 65536)", timeout=10, max_output_bytes=1000)
    assert flood.killed and flood.reason == "output limit exceeded" and len(flood.stderr) == 1000
    slow = run_python("import time\ntime.sleep(30)", timeout=1)
    assert slow.timed_out and slow.killed and slow.returncode < 0 and 1 <= slow.duration < 4
    cpu = run_python("while True:\n    pass", timeout=10, cpu_seconds=1)
    assert cpu.returncode < 0 and not cpu.timed_out and cpu.duration < 5, cpu


def test_degrades_without_namespaces():
    """As an unprivileged user namespaces are refused: detection falls back to rlimits+audit and stays safe."""
    where = Path(tempfile.mkdtemp(prefix=f"{TAG}-probe-"))
    script = where / "probe.py"
    # a copy the unprivileged user can read (the checkout may sit in a 0700 directory, e.g. under mktemp -d)
    module = where / "sandbox_copy.py"
    module.write_bytes(Path(sandbox.__file__).read_bytes())
    module.chmod(0o644)
    script.write_text(textwrap.dedent(f"""\
        import importlib.util, json, os, sys
        spec = importlib.util.spec_from_file_location("sb", {str(module)!r})
        sb = sys.modules["sb"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sb)
        out = {{"mode": sb.isolation()[0]}}
        for name, code in {{
            "ok": "print(6 * 7)",
            "net": "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)",
            "kill": "import os; os.kill(os.getppid(), 9)",
            "escape": "import os, time\\nif os.fork() == 0:\\n    os.setsid(); time.sleep(30)\\nprint('bye')",
            "loop": "while True: pass",
        }}.items():
            r = sb.run_python(code, timeout=1.5)
            out[name] = [r.returncode, r.stdout.strip(), r.stderr.strip().splitlines()[-1:], r.timed_out]
        print(json.dumps(out))
        """))  # fmt: skip
    where.chmod(0o755)
    script.chmod(0o644)
    python = sandbox.isolation()[1]
    try:
        proc = subprocess.run(
            [python, "-I", "-S", str(script)],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
            cwd="/",
            user=sandbox.SANDBOX_UID,
            group=sandbox.SANDBOX_GID,
            extra_groups=[],
            env={"PATH": sandbox.PATH},
        )
    finally:
        script.unlink()
        module.unlink()
        where.rmdir()
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mode"] == FALLBACK
    assert out["ok"] == [0, "42", [], False]
    assert out["net"][0] == 1 and "sandbox: socket" in out["net"][2][0]
    assert out["kill"][0] == 1 and "sandbox: os.kill" in out["kill"][2][0]
    assert out["escape"][:2] == [0, "bye"]
    assert out["loop"][3] is True


def test_nothing_left_behind():
    """Runs last in this file (the module fixture checks again after the teardown of everything)."""
    time.sleep(0.2)
    assert sandbox_processes() == []
    assert sandbox_dirs() == []
