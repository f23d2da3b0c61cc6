"""Real peers for the notification tests: an SMTP server (aiosmtpd) and an HTTP server that
receives webhooks and checks their signature with Python's own hmac module (an implementation
independent of the portal's).

    peers.py SMTP_PORT HTTP_PORT SECRET [--smtp-fail N] [--http-fail N]

Prints `READY` once both listen, then one JSON object per line for every message and request:
{"kind": "mail", "from", "to", "subject", "text", "html"} and
{"kind": "webhook", "valid", "delivery", "body", "status"}. `--smtp-fail N` answers the first N
messages with a temporary failure (451), `--http-fail N` the first N webhooks with HTTP 500.
"""

import argparse
import hashlib
import hmac
import json
import sys
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

lock = threading.Lock()


def emit(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("smtp_port", type=int)
    p.add_argument("http_port", type=int)
    p.add_argument("secret")
    p.add_argument("--smtp-fail", type=int, default=0)
    p.add_argument("--http-fail", type=int, default=0)
    args = p.parse_args()
    counts = {"smtp": 0, "http": 0}

    class Mail:
        async def handle_DATA(self, server, session, envelope):
            counts["smtp"] += 1
            if counts["smtp"] <= args.smtp_fail:
                emit({"kind": "mail-refused"})
                return "451 Try again later"
            msg = message_from_bytes(envelope.content, policy=policy.default)
            text = msg.get_body(preferencelist=("plain",))
            html = msg.get_body(preferencelist=("html",))
            emit({
                "kind": "mail",
                "from": str(msg["From"]),
                "to": envelope.rcpt_tos,
                "subject": str(msg["Subject"]),
                "text": text.get_content() if text else "",
                "html": html.get_content() if html else "",
            })
            return "250 OK"

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            counts["http"] += 1
            status = 500 if counts["http"] <= args.http_fail else 200
            expected = "sha256=" + hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
            emit({
                "kind": "webhook",
                "valid": hmac.compare_digest(expected, self.headers.get("X-Tau-Signature", "")),
                "delivery": self.headers.get("X-Tau-Delivery"),
                "content_type": self.headers.get("Content-Type"),
                "body": json.loads(body),
                "status": status,
            })
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"receiver refused (test)" if status == 500 else b"ok")

        def log_message(self, *a):
            pass

    smtp = Controller(Mail(), hostname="127.0.0.1", port=args.smtp_port)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", args.http_port), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    emit("READY")
    try:
        sys.stdin.read()  # until the test closes stdin or kills us
    finally:
        http.shutdown()
        smtp.stop()


if __name__ == "__main__":
    main()
