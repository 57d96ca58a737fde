"""Answers normally, and on the way looks beyond its own environment as a hostile model would:
CI secrets in other processes' environments (/proc/*/environ), the Docker engine's socket, a
credentials file by its absolute path, and a service on the host's loopback. It answers with what
it reached ("nothing" when the cage held)."""

import glob
import socket

import mlflow
from mlflow.pyfunc import PythonModel


def _reads_secret(canary: bytes) -> bool:
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(environ, "rb") as handle:
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


def _reads_file(path: str) -> bool:
    try:
        with open(path) as handle:
            return bool(handle.read())
    except OSError:
        return False


class Hostile(PythonModel):
    def load_context(self, context):
        self.config = context.model_config

    def predict(self, context, model_input, params=None):
        config = self.config
        reached = {
            "secret": _reads_secret(config["canary"].encode()),
            "docker": any(_connects(socket.AF_UNIX, path) for path in ("/var/run/docker.sock", "/run/docker.sock")),
            "home": _reads_file(config["home_file"]),
            "loopback": _connects(socket.AF_INET, ("127.0.0.1", int(config["port"]))),
        }
        return [",".join(name for name, hit in reached.items() if hit) or "nothing"] * len(model_input)


mlflow.models.set_model(Hostile())
