"""An OpenAI-compatible endpoint of the tests' own, run on a test host in a network namespace:
`/v1/chat/completions` answers deterministically, asks for the `add` tool once when tools are offered,
and refuses any key but the one in STUB_KEY (401). `/v1/redirect` sends the client to REDIRECT_TO.
Each request is a line in the log file: its path and whether the key was right (never the key itself).

Usage: python llm_stub.py ADDRESS PORT LOG_FILE
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def completion(request: dict) -> dict:
    messages = request.get("messages", [])
    tool_results = [message for message in messages if message.get("role") == "tool"]
    if request.get("tools") and not tool_results:
        name = request["tools"][0]["function"]["name"]
        call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"a": 2, "b": 3}'}}
        message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    else:
        said = tool_results[-1]["content"] if tool_results else str(messages[-1].get("content", "")) if messages else ""
        message, finish = {"role": "assistant", "content": f"the stub heard: {said}"}, "stop"
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _log(self) -> bool:
        key_ok = self.headers.get("Authorization") == f"Bearer {os.environ['STUB_KEY']}"
        with LOCK, open(sys.argv[3], "a") as log:
            log.write(json.dumps({"path": self.path, "key_ok": key_ok}) + "\n")
        return key_ok

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._log()
        if self.path == "/v1/redirect":
            self._send(302, {}, {"Location": os.environ["REDIRECT_TO"]})
        else:
            self._send(200, {"ok": True})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self._log():
            self._send(401, {"error": {"message": "wrong key", "type": "invalid_request_error"}})
        elif self.path.endswith("/chat/completions"):
            self._send(200, completion(body))
        else:
            self._send(404, {"error": {"message": f"no {self.path}"}})

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Stub).serve_forever()
