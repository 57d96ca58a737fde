"""A hostile probe: it answers normally, and on the way tries what a model that has read the
validator's code would try. It answers with a JSON object: `reached` lists what it got to (empty
when the cage held), `forked` how many processes it could start at once.

What it tries, from its model_config:
- CI secrets in other processes' environments and command lines (/proc/*/environ, /proc/*/cmdline);
- the Docker engine's socket, wherever it may be;
- files it must not read: a home's credentials, the checkout, the host's /tmp and /run, root-only files;
- any network: the host's loopback, a test host in a network namespace of the test's own;
- writes outside its HOME: everything the validator reads back or writes (its log, the team checks'
  results, HOME and .pth files, Hypothesis' directory, the socket, the plan), its own virtualenv
  (whose files must not be uv's cache), the model, the host's /tmp;
- undoing the cage: root, capabilities, a user namespace of its own to unmount what hides the host;
- more processes than the cage allows; more memory, with `hog_mb`: `hogs` processes holding that much each,
  or with `memfd_mb`: that much in a memfd file, which no process maps;
- with `forge_answers`: answers the validator was not asked for, written in place of the predictor's.
"""

import glob
import json
import os
import socket
import subprocess
import sys
import time

import mlflow
import pandas
from mlflow.pyfunc import PythonModel


def _any_proc_file_holds(pattern: str, canary: bytes) -> bool:
    for path in glob.glob(pattern):
        try:
            with open(path, "rb") as handle:
                if canary in handle.read():
                    return True
        except OSError:
            continue
    return False


def _connects(family: int, address: object) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(address)
            return True
    except OSError:
        return False


def _tunnels(proxy: str, target: str) -> bool:
    """Whether the proxy opens a tunnel to `target`."""
    host, port = proxy.rsplit("/", 1)[-1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            return sock.recv(64).split(b" ")[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


def _reads(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return bool(handle.read(1))
    except OSError:
        return False


def _writes(path: str) -> bool:
    """Appends to a file, or makes it (and its directory), or puts a link in its place."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab") as handle:
            handle.write(b"\nprint('the model wrote this')\n")
        return True
    except OSError:
        pass
    try:
        os.replace(path, path + ".moved")
        return True
    except OSError:
        pass
    try:
        os.symlink("/etc/shadow", path)
        return True
    except OSError:
        return False


def _undoes_the_cage() -> list[str]:
    found = []
    if os.getuid() == 0 or os.geteuid() == 0:
        found.append("uid-0")
    with open("/proc/self/status") as status:
        effective = next(line for line in status if line.startswith("CapEff:")).split()[1]
    if int(effective, 16):
        found.append("capabilities")
    unmount = "umount -l /root /home /tmp /run 2>/dev/null; mount -o remount,rw / 2>/dev/null && echo RW; ls -A /run"
    try:
        done = subprocess.run(["unshare", "-Urm", "sh", "-c", unmount], capture_output=True, text=True, timeout=20)
        if "RW" in done.stdout or "docker.sock" in done.stdout:
            found.append("user-namespace")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return found


def _forks(attempts: int) -> int:
    children = []
    try:
        for _ in range(attempts):
            pid = os.fork()
            if pid == 0:
                time.sleep(3)
                os._exit(0)
            children.append(pid)
    except OSError:
        pass
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return len(children)


def _hog(megabytes: int, processes: int) -> None:
    hold = f"b = bytearray({megabytes} * 2**20); import time; time.sleep(20)"
    hogs = [subprocess.Popen([sys.executable, "-c", hold]) for _ in range(processes)]
    for hog in hogs:
        hog.wait()


def _hold_in_memfd(megabytes: int) -> int:
    held = os.memfd_create("weights")
    chunk = b"\0" * 2**20
    for _ in range(megabytes):
        os.write(held, chunk)
    return held


def _forge_answers() -> None:
    """The predictor renames its answers file into place once it is written: write something else first."""
    rename = os.replace

    def forged(source, destination):
        with open(source, "w") as answers:
            answers.write('{"load_seconds": 0, "latency_seconds": [], "answers": {}}')
        rename(source, destination)

    os.replace = forged


def probe(config: dict) -> dict:
    canary = config["canary"].encode()
    home = os.environ["HOME"]
    work = os.path.dirname(home)
    tries = {
        "environ": lambda: _any_proc_file_holds("/proc/[0-9]*/environ", canary),
        "cmdline": lambda: _any_proc_file_holds("/proc/[0-9]*/cmdline", canary),
        "docker": lambda: any(
            _connects(socket.AF_UNIX, path) for path in ("/var/run/docker.sock", "/run/docker.sock", *config["sockets"])
        ),
        "loopback": lambda: _connects(socket.AF_INET, ("127.0.0.1", int(config["port"]))),
        **{f"read:{name}": (lambda path=path: _reads(path)) for name, path in config["files"].items()},
        **{
            f"write:{name}": (lambda path=path: _writes(path))
            for name, path in {
                **config["writes"],
                "model-log": f"{work}/model.log",
                "team-results": f"{work}/team-checks/results.jsonl",
                "team-context": f"{work}/team-checks/context.json",
                "team-pth": f"{work}/team-checks/home/.local/lib/python3.11/site-packages/probe.pth",
                "hypothesis": f"{work}/hypothesis/examples/probe",
                "socket": f"{work}/socket/model.sock",
                "plan": f"{work}/plan/plan.json",
                "installed-package": pandas.__file__,  # the venv's, or the container image's
                "model": f"{config['model_dir']}/MLmodel",
                "host-tmp": "/tmp/probe-was-here",
            }.items()
        },
    }
    for name in ("test_host", "engine"):  # a host of the tests' own; the Docker engine DOCKER_HOST names
        if config.get(name):
            host, port = config[name].split(":")
            tries[name.replace("_", "-")] = lambda host=host, port=port: _connects(socket.AF_INET, (host, int(port)))
    if proxy := os.environ.get("HTTPS_PROXY"):  # declared egress: ask its proxy for everything else too
        targets = {"test-host": config.get("test_host"), "engine": config.get("engine")}
        targets |= {"loopback": f"127.0.0.1:{config['port']}", "metadata": "169.254.169.254:80"}
        for name, target in targets.items():
            if target:
                tries[f"proxy:{name}"] = lambda target=target: _tunnels(proxy, target)
    reached = [name for name, attempt in tries.items() if attempt()]
    return {"reached": reached + _undoes_the_cage(), "forked": _forks(int(config["forks"]))}


class Hostile(PythonModel):
    def load_context(self, context):
        self.config = dict(context.model_config)
        self.config["model_dir"] = sys.argv[1]  # the predictor's argv: MODEL_DIR first
        if self.config.get("hog_mb"):
            _hog(int(self.config["hog_mb"]), int(self.config["hogs"]))
        if self.config.get("memfd_mb"):
            self.held = _hold_in_memfd(int(self.config["memfd_mb"]))
            time.sleep(60)
        if self.config.get("forge_answers"):
            _forge_answers()
        self.found = None

    def predict(self, context, model_input, params=None):
        if self.found is None:
            self.found = json.dumps(probe(self.config))
        return [self.found] * len(model_input)


mlflow.models.set_model(Hostile())
