"""What declared egress costs a GenAI model per LLM call: the same client calls a local OpenAI-like endpoint
directly, and through the door and the validator's proxy, as a caged model does.

    python benchmarks/egress_proxy.py [--calls N] [--repeat R]

Each round makes N calls (default 200) each way, interleaved; a call is a POST of a chat request (~1 KiB)
answered with a completion (~1 KiB), on a connection of its own, as every forwarded call is (the proxy
answers `Connection: close`). Prints the median milliseconds per call of R rounds (default 5) and the ratio
through the proxy against direct. There is no MLflow command to compare with: MLflow neither cages a model
nor filters what it reaches.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlflow_validator.egress.destinations import Destination
from mlflow_validator.egress.proxy import egress_proxy
from mlflow_validator.egress.tunnel import DOOR

ANSWER = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 900}}]}).encode()
CLIENT = """
import json, sys, time, requests
url, calls = sys.argv[1], int(sys.argv[2])
body = {"messages": [{"role": "user", "content": "y" * 900}]}
started = time.perf_counter()
for _ in range(calls):
    requests.post(url, json=body, timeout=30).raise_for_status()
print((time.perf_counter() - started) / calls * 1000)
"""


class Completions(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def per_call_ms(url: str, calls: int, proxy_socket: Path | None) -> float:
    command = [sys.executable, "-c", CLIENT, url, str(calls)]
    env = {"PATH": "/usr/bin:/bin"}
    if proxy_socket is not None:
        port = free_port()
        env |= {"HTTP_PROXY": f"http://127.0.0.1:{port}"}
        command = [sys.executable, "-I", str(DOOR), "unix", str(proxy_socket), str(port), "--", *command]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Completions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    with tempfile.TemporaryDirectory(prefix="egress-bench-", dir="/tmp") as directory:
        proxy_socket = Path(directory) / "proxy.sock"
        with egress_proxy([Destination("127.0.0.1", server.server_address[1])], proxy_socket):
            direct, proxied = [], []
            for _ in range(args.repeat):
                direct.append(per_call_ms(url, args.calls, None))
                proxied.append(per_call_ms(url, args.calls, proxy_socket))
            through, alone = statistics.median(proxied), statistics.median(direct)
            print(
                f"direct {alone:.2f} ms/call, through the door and the proxy {through:.2f} ms/call "
                f"({through / alone:.2f}x, +{through - alone:.2f} ms; medians of {args.repeat} x {args.calls} calls)"
            )
    server.shutdown()


if __name__ == "__main__":
    main()
