"""A webhook receiver for mlgrid that accepts only correctly signed deliveries.

    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py 8000

Create the subscription with the same secret (``"signingSecret": "whsec_..."`` in the
destination's properties) and ``http://127.0.0.1:8000/`` as ``endpointUrl``.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

verifier = Webhook(os.environ["WEBHOOK_SECRET"])


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("aeg-event-type") == "SubscriptionValidation":
            # Event Grid's handshake when the subscription is created: echo the code.
            code = json.loads(body)[0]["data"]["validationCode"]
            return self.reply(200, {"validationResponse": code})
        try:
            # Checks webhook-signature over "webhook-id.webhook-timestamp.body" and that the
            # timestamp is recent (replays of old requests are refused).
            verifier.verify(body, {name.lower(): value for name, value in self.headers.items()})
        except WebhookVerificationError:
            return self.reply(401, {"error": "invalid signature"})  # 401 is not retried
        events = json.loads(body)
        for event in events if isinstance(events, list) else [events]:
            kind = event.get("eventType") or event.get("type")
            print("verified", event["id"], kind, self.headers["aeg-delivery-count"], flush=True)
        self.reply(200)

    def do_OPTIONS(self) -> None:
        # The CloudEvents handshake (subscriptions delivering CloudEventSchemaV1_0).
        self.send_response(200)
        self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", "*"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def reply(self, status: int, body: object = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep the output to the events
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # port 0: any free port
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()
