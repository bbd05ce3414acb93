"""The smallest webhook receiver for trying mlgrid: answers the validation handshake, prints
every event it receives, and consents to CloudEvents deliveries.

    python examples/echo_receiver.py            # listens on http://127.0.0.1:9000 (any path)
    python examples/echo_receiver.py 9100       # another port

The documentation's webhook examples send to ``http://127.0.0.1:9000/hook``: run this in a
second terminal first. It checks no signature: see ``examples/webhook_receiver.py`` for that.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        events = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"[]")
        events = events if isinstance(events, list) else [events]
        if self.headers.get("aeg-event-type") == "SubscriptionValidation":
            # Event Grid's handshake when a subscription is created: echo the code back.
            body = json.dumps({"validationResponse": events[0]["data"]["validationCode"]}).encode()
        else:
            for event in events:
                kind = event.get("eventType") or event.get("type")
                print(kind, event.get("subject"), json.dumps(event.get("data")), flush=True)
            body = b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:  # CloudEvents delivery asks for consent first
        self.send_response(200)
        self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", "*"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:  # one line per event is enough
        return


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
