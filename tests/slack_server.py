"""A Slack-like Web API server on loopback, for the real ``slack_sdk.WebClient`` to talk to.

It implements what rearguard calls (``chat.postMessage``, ``chat.update``, ``conversations.create``,
``conversations.invite``, ``conversations.list``, ``conversations.history``,
``conversations.replies``) the way Slack documents them: the bearer token is checked
(``invalid_auth``), unknown channels are ``channel_not_found``, channels the bot is not in are
``not_in_channel``, and message limits are enforced with Slack's error codes (``invalid_blocks``
for a header over 150 characters, a section text over 3,000, a field over 2,000, more than 10
fields or more than 50 blocks; ``msg_too_long`` for text over 40,000 characters).

It also takes what rearguard posts to a slash command's ``response_url``
(:meth:`SlackServer.response_url` makes one): JSON with ``text`` or ``blocks``, at most five
posts per URL (then 404 ``used_url``), as Slack documents; :attr:`SlackServer.responses` holds
them by URL.

Failures on demand: :meth:`SlackServer.rate_limit` answers the next requests 429 with a
``Retry-After``; :attr:`SlackServer.down` answers 503 to everything; :meth:`SlackServer.fail_next`
answers 5xx; :meth:`SlackServer.accept_then_fail` stores the next message and still answers 500
(the "did it arrive?" case).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Posted:
    """One message the server accepted."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    client_msg_id: str | None


@dataclass
class _Channel:
    id: str
    name: str
    member: bool = True
    members: set[str] = field(default_factory=set)


def _block_error(blocks: Any) -> str | None:
    if not isinstance(blocks, list):
        return "blocks must be a list"
    if len(blocks) > 50:
        return "no more than 50 items allowed [json-pointer:/blocks]"
    for index, block in enumerate(blocks):
        kind = block.get("type")
        text = (block.get("text") or {}).get("text", "") if isinstance(block, dict) else ""
        if kind == "header" and len(text) > 150:
            return f"must be less than 151 characters [json-pointer:/blocks/{index}/text]"
        if kind == "section":
            if len(text) > 3000:
                return f"must be less than 3001 characters [json-pointer:/blocks/{index}/text]"
            fields = block.get("fields") or []
            if len(fields) > 10:
                return f"no more than 10 items allowed [json-pointer:/blocks/{index}/fields]"
            for item in fields:
                if len(item.get("text", "")) > 2000:
                    return f"must be less than 2001 characters [json-pointer:/blocks/{index}]"
            if not text and not fields:
                return f"section needs text or fields [json-pointer:/blocks/{index}]"
    return None


def _blocks_of(args: dict[str, Any]) -> tuple[list[Any], tuple[int, dict, dict] | None]:
    """A call's blocks (sent as JSON text or a list), and Slack's refusal of them if any."""
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    problem = _block_error(blocks) if blocks else None
    if problem:
        return blocks, (200, {}, {"ok": False, "error": "invalid_blocks", "errors": [problem]})
    return blocks, None


class SlackServer:
    """The server; use as a context manager, then point ``base_url`` at it."""

    def __init__(self, token: str = "xoxb-test-token", channels: tuple[str, ...] = ()) -> None:
        self.token = token
        self.messages: list[Posted] = []
        self.calls: list[str] = []
        self.down = False
        self._rate_limited = 0
        self._retry_after = 1
        self._failing: list[int] = []
        self._accept_then_fail = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self.channels: dict[str, _Channel] = {}
        self.responses: dict[str, list[dict[str, Any]]] = {}
        for name in channels:
            self.add_channel(name)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- control ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The Web API base URL for ``WebClient(base_url=...)``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    @property
    def root_url(self) -> str:
        """The server's address, ``http://127.0.0.1:PORT/``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def response_url(self) -> str:
        """A fresh slash command ``response_url`` on this server."""
        with self._lock:
            url = f"{self.root_url}commands/T0TEAM/{next(self._ids)}/r3sp0ns3t0k3n"
            self.responses[url] = []
            return url

    def add_channel(self, name: str, *, member: bool = True) -> str:
        """Create a channel the bot is (or is not) a member of; return its id."""
        with self._lock:
            channel_id = f"C{next(self._ids):08d}"
            self.channels[channel_id] = _Channel(channel_id, name.lstrip("#"), member)
            return channel_id

    def rate_limit(self, count: int, *, retry_after: int = 1) -> None:
        """Answer the next ``count`` requests 429 with ``Retry-After: retry_after``."""
        with self._lock:
            self._rate_limited = count
            self._retry_after = retry_after

    def fail_next(self, count: int, *, status: int = 500) -> None:
        """Answer the next ``count`` requests with an HTTP error ``status``."""
        with self._lock:
            self._failing.extend([status] * count)

    def accept_then_fail(self, count: int = 1) -> None:
        """Store the next ``count`` messages but answer 500, as a proxy that lost the answer."""
        with self._lock:
            self._accept_then_fail = count

    def in_channel(self, name: str) -> list[Posted]:
        """The messages posted to a channel (by name), in order."""
        channel_id = self._find(name)
        return [m for m in self.messages if m.channel == channel_id]

    def __enter__(self) -> SlackServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the API ----------------------------------------------------------------------------

    def _find(self, name_or_id: str) -> str | None:
        bare = name_or_id.lstrip("#")
        if bare in self.channels:
            return bare
        for channel in self.channels.values():
            if channel.name == bare:
                return channel.id
        return None

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._clock):06d}"

    def handle(self, method: str, args: dict[str, Any], auth: str | None) -> tuple[int, dict, dict]:
        """Answer one API call: (HTTP status, headers, JSON body)."""
        with self._lock:
            self.calls.append(method)
            if self.down:
                return 503, {}, {"ok": False, "error": "service_unavailable"}
            if self._rate_limited:
                self._rate_limited -= 1
                return (
                    429,
                    {"Retry-After": str(self._retry_after)},
                    {"ok": False, "error": "ratelimited"},
                )
            if self._failing:
                return self._failing.pop(0), {}, {"ok": False, "error": "internal_error"}
            if auth != f"Bearer {self.token}":
                return 200, {}, {"ok": False, "error": "invalid_auth"}
            answer = getattr(self, "_" + method.replace(".", "_"), None)
            if answer is None:
                return 404, {}, {"ok": False, "error": "unknown_method"}
            return answer(args)

    def respond(self, url: str, body: dict[str, Any]) -> tuple[int, dict, dict]:
        """Answer a post to a response_url: recorded, or 404 when unknown or used up."""
        with self._lock:
            if self.down:
                return 503, {}, {"ok": False, "error": "service_unavailable"}
            posted = self.responses.get(url)
            if posted is None:
                return 404, {}, {"ok": False, "error": "expired_url"}
            if len(posted) >= 5:
                return 404, {}, {"ok": False, "error": "used_url"}
            if not body.get("text") and not body.get("blocks"):
                return 400, {}, {"ok": False, "error": "no_text"}
            posted.append(body)
            return 200, {}, {"ok": True}

    def _chat_postMessage(self, args: dict[str, Any]) -> tuple[int, dict, dict]:
        channel_id = self._find(str(args.get("channel", "")))
        if channel_id is None:
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        if not self.channels[channel_id].member:
            return 200, {}, {"ok": False, "error": "not_in_channel"}
        blocks, refused = _blocks_of(args)
        if refused:
            return refused
        text = str(args.get("text") or "")
        if len(text) > 40_000:
            return 200, {}, {"ok": False, "error": "msg_too_long"}
        if not text and not blocks:
            return 200, {}, {"ok": False, "error": "no_text"}
        thread_ts = args.get("thread_ts")
        if thread_ts and not any(
            m.ts == thread_ts and m.channel == channel_id for m in self.messages
        ):
            return 200, {}, {"ok": False, "error": "thread_not_found"}
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        posted = Posted(
            channel=channel_id,
            ts=self._ts(),
            thread_ts=thread_ts,
            text=text,
            blocks=blocks,
            metadata=metadata,
            client_msg_id=args.get("client_msg_id"),
        )
        self.messages.append(posted)
        if self._accept_then_fail:
            self._accept_then_fail -= 1
            return 500, {}, {"ok": False, "error": "internal_error"}
        return 200, {}, {"ok": True, "channel": channel_id, "ts": posted.ts, "message": {}}

    def _chat_update(self, args: dict[str, Any]) -> tuple[int, dict, dict]:
        channel_id = str(args.get("channel", ""))
        if channel_id not in self.channels:  # chat.update takes a channel id, not a name
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        found = [m for m in self.messages if m.channel == channel_id and m.ts == args.get("ts")]
        if not found:
            return 200, {}, {"ok": False, "error": "message_not_found"}
        blocks, refused = _blocks_of(args)
        if refused:
            return refused
        found[0].text = str(args.get("text") or found[0].text)
        found[0].blocks = blocks
        return 200, {}, {"ok": True, "channel": channel_id, "ts": found[0].ts}

    def _conversations_create(self, args: dict[str, Any]) -> tuple[int, dict, dict]:
        name = str(args.get("name", ""))
        if self._find(name) is not None:
            return 200, {}, {"ok": False, "error": "name_taken"}
        channel_id = f"C{next(self._ids):08d}"
        self.channels[channel_id] = _Channel(channel_id, name)
        return 200, {}, {"ok": True, "channel": {"id": channel_id, "name": name}}

    def _conversations_invite(self, args: dict[str, Any]) -> tuple[int, dict, dict]:
        channel_id = self._find(str(args.get("channel", "")))
        if channel_id is None:
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        users = [u for u in str(args.get("users", "")).split(",") if u]
        self.channels[channel_id].members.update(users)
        return 200, {}, {"ok": True, "channel": {"id": channel_id}}

    def _conversations_list(self, args: dict[str, Any]) -> tuple[int, dict, dict]:
        channels = [{"id": c.id, "name": c.name} for c in self.channels.values()]
        return 200, {}, {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    def _as_history(self, messages: list[Posted], args: dict[str, Any]) -> dict[str, Any]:
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        items = []
        for m in messages:
            item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text}
            if m.thread_ts:
                item["thread_ts"] = m.thread_ts
            if with_metadata and m.metadata:
                item["metadata"] = m.metadata
            items.append(item)
        return {"ok": True, "messages": items, "has_more": False}

    def _conversations_history(self, args: dict[str, Any]) -> tuple[int, dict, dict]:
        channel_id = self._find(str(args.get("channel", "")))
        if channel_id is None:
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        top = [m for m in self.messages if m.channel == channel_id and not m.thread_ts]
        return 200, {}, self._as_history(list(reversed(top)), args)

    def _conversations_replies(self, args: dict[str, Any]) -> tuple[int, dict, dict]:
        channel_id = self._find(str(args.get("channel", "")))
        if channel_id is None:
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        ts = args.get("ts")
        thread = [m for m in self.messages if m.channel == channel_id and ts in (m.ts, m.thread_ts)]
        return 200, {}, self._as_history(thread, args)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _answer(self) -> None:
                url = urlparse(self.path)
                method = url.path.rsplit("/", 1)[-1]
                args: dict[str, Any] = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if raw:
                    if "json" in (self.headers.get("Content-Type") or ""):
                        args.update(json.loads(raw))
                    else:
                        args.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
                if url.path.startswith("/commands/"):
                    status, headers, body = server.respond(server.root_url + url.path[1:], args)
                else:
                    status, headers, body = server.handle(
                        method, args, self.headers.get("Authorization")
                    )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

        return Handler
