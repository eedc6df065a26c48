#!/usr/bin/env python3
"""A webhook receiver for Errand: verifies both signature schemes, drops duplicates and
stale updates, and prints each event. Standard library only.

    python3 examples/webhook_receiver.py --port 9000 --secret whsec_...
    # then: PUT /webhooks/endpoint {"url": "http://<this host>:9000/"}

Answers 200 to a verified webhook (also to a duplicate, so that Errand stops sending
it) and 400 to one whose signature or timestamp does not check out.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Reject webhooks signed more than this long ago or ahead (replayed or forged).
TOLERANCE_SECONDS = 5 * 60


def verify_standard(secrets, headers, body: bytes) -> bool:
    """Standard Webhooks: `webhook-signature` holds `v1,<base64 HMAC-SHA256 of
    "{id}.{timestamp}.{body}">` keyed with the base64 part of a secret (two signatures,
    space-separated, during a rotation)."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    offered = headers.get("webhook-signature", "").split(" ")
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
        expected = "v1," + base64.b64encode(digest.digest()).decode()
        if any(hmac.compare_digest(expected, s) for s in offered):
            return True
    return False


def verify_reference(secret, headers, body: bytes) -> bool:
    """The reference API's scheme: `X-Webhook-Signature` is the hex HMAC-SHA256 of the
    raw body, keyed with the whole (newest) secret string."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-webhook-signature", ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--secret", action="append", required=True,
                        help="the endpoint's whsec_ secret (during a rotation: the old, then the new)")
    args = parser.parse_args()
    seen_ids = set()
    latest_sequence = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not verify_standard(args.secret, headers, body):
                print("rejected: bad signature or timestamp", flush=True)
                self.send_response(400)
                self.end_headers()
                return
            event = json.loads(body)
            if event["id"] in seen_ids:
                print(f"duplicate {event['id']}", flush=True)
            elif event["sequence"] < latest_sequence.get(event["order_id"], 0):
                seen_ids.add(event["id"])
                print(f"stale {event['event']} {event['order_id']} sequence {event['sequence']}", flush=True)
            else:
                seen_ids.add(event["id"])
                latest_sequence[event["order_id"]] = event["sequence"]
                reference = "ok" if verify_reference(args.secret[-1], headers, body) else "bad"
                print(f"verified {event['event']} {event['order_id']} status {event['status']} "
                      f"sequence {event['sequence']} x-webhook-signature {reference}", flush=True)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"listening on http://{args.host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
