"""A DASHER-compatible HTTP server for development and tests (not for production).

It speaks the client contract of ``sendit_ops.pseudonyms.dasher_client``: ``POST /token``
exchanges a refresh token for new access and refresh tokens (the old refresh token dies:
rotation), and
``POST /v1/uid/<study>`` returns stable suids and per-patient jitters for a study name. It
enforces bearer tokens (which expire), the id pattern and the 1000-item limit per entity.

Faults are injected through ``POST /_admin/faults`` with a JSON body
``{"kind": K, "count": N, "retry_after": S, "delay": S}``; kinds: ``401`` (refuse every
token: a 401 storm), ``500``, ``429`` (with Retry-After), ``slow`` (sleep before answering),
``malformed`` (200 without ``results``), ``missing_items`` (drop the items), ``not_json``.
``POST /_admin/expire`` expires the current access token; ``POST /_admin/token_delay``
``{"delay": S}`` makes every token refresh take S seconds (a window for concurrent
refreshes); ``GET /_admin/stats`` gives counters; ``DELETE /_admin/faults`` clears faults.

Run: ``python -m devtools.dasher_server --port 8765 --credentials-out dasher.json``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]*$")
MAX_ITEMS = 1000
TS = "%Y-%m-%dT%H:%M:%SZ"


class DasherState:
    """Tokens, faults and counters of one server."""

    def __init__(self, secret: bytes, token_ttl: float):
        self.secret = secret
        self.token_ttl = token_ttl
        self.lock = threading.Lock()
        self.access: dict[str, float] = {}  # token -> expiry
        self.refresh_token = ""
        self.token_delay = 0.0
        self.faults: list[dict[str, Any]] = []
        self.stats = {
            "uid_calls": 0,
            "refreshes": 0,
            "refresh_calls": 0,  # every call of the token endpoint, refused ones too
            "refused_tokens": 0,
            "max_items": 0,
            "faults_served": 0,
        }

    def issue(self) -> dict[str, str]:
        """New access and refresh tokens; the previous refresh token stops working."""
        access = "acc-" + secrets.token_urlsafe(16)
        self.access = {access: time.time() + self.token_ttl}
        self.refresh_token = "ref-" + secrets.token_urlsafe(16)
        return {"accessToken": access, "refreshToken": self.refresh_token}

    def take_fault(self) -> dict[str, Any] | None:
        """The next injected fault, if any (counted down)."""
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault["count"] -= 1
            if fault["count"] <= 0:
                self.faults.pop(0)
            self.stats["faults_served"] += 1
            return fault

    def suid(self, study: str, source: str, value: str) -> str:
        """Stable suid for an id in a study."""
        mac = hmac.new(self.secret, f"{study}|{source}|{value}".encode(), hashlib.sha256)
        return base64.b32encode(mac.digest()[:10]).decode()

    def jitter(self, study: str, source: str, value: str) -> int:
        """Stable per-patient jitter (days, negative as DASHER's usually are)."""
        mac = hmac.new(self.secret, f"jitter|{study}|{source}|{value}".encode(), hashlib.sha256)
        return -(7 + int.from_bytes(mac.digest()[:4], "big") % 24)


def _shift(stamp: str | None, days: int) -> str | None:
    if not stamp:
        return None
    try:
        return (datetime.strptime(stamp, TS) + timedelta(days=days)).strftime(TS)
    except ValueError:
        return None


class Handler(BaseHTTPRequestHandler):
    """HTTP handler; the server's ``state`` attribute holds a DasherState."""

    server_version = "DasherDev/1.0"

    @property
    def state(self) -> DasherState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
        if getattr(self.server, "verbose", False):
            sys.stderr.write("dasher-dev: " + fmt % args + "\n")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None

    def do_GET(self) -> None:
        if self.path == "/_admin/stats":
            return self._send(200, self.state.stats)
        return self._send(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if self.path == "/_admin/faults":
            self.state.faults.clear()
            return self._send(200, {"faults": []})
        return self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self._body()
        state = self.state
        if self.path == "/_admin/faults":
            fault = {
                "kind": str(body["kind"]),
                "count": int(body.get("count", 1)),
                "retry_after": body.get("retry_after", 1),
                "delay": body.get("delay", 0),
            }
            state.faults.append(fault)
            return self._send(200, {"faults": state.faults})
        if self.path == "/_admin/expire":
            state.access = {t: 0.0 for t in state.access}
            return self._send(200, {"expired": True})
        if self.path == "/_admin/token_delay":
            state.token_delay = float(body.get("delay", 0))
            return self._send(200, {"token_delay": state.token_delay})
        if self.path == "/token":
            time.sleep(state.token_delay)  # outside the lock: concurrent refreshes overlap
            with state.lock:
                state.stats["refresh_calls"] += 1
                if not isinstance(body, dict) or body.get("refreshToken") != state.refresh_token:
                    return self._send(401, {"error": "invalid refresh token"})
                state.stats["refreshes"] += 1
                return self._send(200, state.issue())
        match = re.fullmatch(r"/v1/uid/([^/]+)", self.path)
        if not match:
            return self._send(404, {"error": "not found"})
        return self._uid(match.group(1), body)

    def _uid(self, study: str, body: Any) -> None:
        state = self.state
        state.stats["uid_calls"] += 1
        fault = state.take_fault()
        kind = fault["kind"] if fault else ""
        if kind == "slow":
            time.sleep(float(fault["delay"]))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if kind == "401" or state.access.get(token, 0) < time.time():
            state.stats["refused_tokens"] += 1
            return self._send(401, {"error": "token expired or invalid"})
        if kind == "500":
            return self._send(500, {"error": "injected server error"})
        if kind == "429":
            return self._send(
                429, {"error": "slow down"}, {"Retry-After": str(fault["retry_after"])}
            )
        if kind == "not_json":
            return self._send(200, b"<html>gateway</html>")
        if kind == "malformed":
            return self._send(200, {"status": "ok"})
        if not isinstance(body, dict) or not isinstance(body.get("identifiers"), list):
            return self._send(400, {"error": "body needs 'identifiers'"})
        results = []
        for entity in body["identifiers"]:
            items = entity.get("items") or []
            state.stats["max_items"] = max(state.stats["max_items"], len(items))
            if len(items) > MAX_ITEMS:
                return self._send(400, {"error": f"more than {MAX_ITEMS} items for one entity"})
            for ident in [entity, *items]:
                if not isinstance(ident.get("id"), str) or not ID_PATTERN.match(ident["id"]):
                    return self._send(400, {"error": "id does not match ^[A-Za-z0-9_-]*$"})
            jitter = state.jitter(study, entity.get("id_source", ""), entity["id"])
            results.append(
                {
                    "id": entity["id"],
                    "id_source": entity.get("id_source"),
                    "suid": state.suid(study, entity.get("id_source", ""), entity["id"]),
                    "jitter": jitter,
                    "jittered_timestamp": _shift(entity.get("id_timestamp"), jitter),
                    "items": []
                    if kind == "missing_items"
                    else [
                        {
                            "id": i["id"],
                            "id_source": i.get("id_source"),
                            "suid": state.suid(study, i.get("id_source", ""), i["id"]),
                            "jitter": jitter,
                            "jittered_timestamp": _shift(i.get("id_timestamp"), jitter),
                        }
                        for i in items
                    ],
                }
            )
        return self._send(200, {"results": results})


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    secret: bytes = b"dasher-dev",
    token_ttl: float = 3600.0,
    verbose: bool = False,
) -> ThreadingHTTPServer:
    """A ready server (not yet serving); ``server.state.issue()`` gives the first tokens."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.state = DasherState(secret, token_ttl)  # type: ignore[attr-defined]
    server.verbose = verbose  # type: ignore[attr-defined]
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    """Start the dev server and write its first credentials in sendit's ``.stanford`` form."""
    parser = argparse.ArgumentParser(description="DASHER-compatible development server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--credentials-out", type=Path, default=Path("dasher-dev.json"))
    parser.add_argument(
        "--token-ttl", type=float, default=3600.0, help="access token lifetime in seconds"
    )
    parser.add_argument("--secret", default="dasher-dev", help="keys the suids and jitters")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    server = make_server(
        args.host,
        args.port,
        secret=args.secret.encode(),
        token_ttl=args.token_ttl,
        verbose=args.verbose,
    )
    host, port = server.server_address[:2]
    tokens = server.state.issue()  # type: ignore[attr-defined]
    creds = {
        **tokens,
        "client_id": "sendit-dev",
        "token_uri": f"http://{host}:{port}/token",
        "base_url": f"http://{host}:{port}",
    }
    args.credentials_out.write_text(json.dumps(creds, indent=1))
    args.credentials_out.chmod(0o600)
    print(
        f"DASHER dev server on http://{host}:{port} ; credentials in {args.credentials_out}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
