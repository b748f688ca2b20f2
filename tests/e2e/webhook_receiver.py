"""A receiving system for webhook end-to-end tests, run as its own process.

``python -m tests.e2e.webhook_receiver PORT SECRET``: every POST is verified with the Standard
Webhooks package (401 when the signature does not match) and kept once per ``webhook-id`` (a copy
counts as a duplicate, answered 204 as a receiver must); ``GET /received`` answers what was kept, in
arrival order, with the counts of duplicates and refused signatures.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Kept:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.bodies: list[object] = []
        self.seen: set[str] = set()
        self.duplicates = 0
        self.refused = 0


def handler(secret: str, kept: Kept) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                data = Webhook(secret).verify(body, dict(self.headers.items()))
            except WebhookVerificationError:
                with kept.lock:
                    kept.refused += 1
                self._answer(401, b"bad signature")
                return
            message_id = self.headers["webhook-id"]
            with kept.lock:
                if message_id in kept.seen:
                    kept.duplicates += 1
                else:
                    kept.seen.add(message_id)
                    kept.ids.append(message_id)
                    kept.bodies.append(data)
            self._answer(204, b"")

        def do_GET(self) -> None:
            with kept.lock:
                answer = {
                    "ids": kept.ids,
                    "bodies": kept.bodies,
                    "duplicates": kept.duplicates,
                    "refused": kept.refused,
                }
            self._answer(200, json.dumps(answer).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def main() -> None:
    port, secret = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(secret, Kept()))
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
