"""Tiny IMAP4rev1 and POP3 servers over implicit TLS, for the mailbox poller's tests.

They speak just the commands a client needs to log in, list, fetch, flag and delete messages
(what ``imaplib`` and ``poplib`` send), hold their messages in memory, and record every
command line so a test can see what the client did. Not a general server.
"""

from __future__ import annotations

import re
import socketserver
import ssl
import threading
from typing import Any


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, handler: Any, ctx: ssl.SSLContext, user: str, password: str):
        super().__init__(("127.0.0.1", 0), handler)
        self.ctx = ctx
        self.user, self.password = user, password
        self.messages: dict[int, bytes] = {}
        self.deleted: set[int] = set()
        self.commands: list[str] = []
        self.lock = threading.Lock()
        self.next_uid = 1

    def add(self, raw: bytes) -> None:
        with self.lock:
            self.messages[self.next_uid] = raw
            self.next_uid += 1

    @property
    def port(self) -> int:
        return self.server_address[1]

    def __enter__(self) -> _Server:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
        self.server_close()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.request = self.server.ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.wfile.write(data + b"\r\n")

    def lines(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.server.commands.append(text)
            yield text


class ImapHandler(_Handler):
    def handle(self) -> None:
        s = self.server
        self.send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test server ready")
        for line in self.lines():
            tag, _sp, rest = line.partition(" ")
            cmd, _sp, args = rest.partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPABILITY":
                self.send("* CAPABILITY IMAP4rev1")
                self.send(f"{tag} OK done")
            elif cmd == "LOGIN":
                user, password = [a.strip('"') for a in args.split(" ", 1)]
                ok = (user, password.replace('\\"', '"')) == (s.user, s.password)
                self.send(f"{tag} OK logged in" if ok else f"{tag} NO [AUTHENTICATIONFAILED] no")
            elif cmd in ("SELECT", "EXAMINE"):
                self.send(f"* {len(s.messages)} EXISTS")
                self.send(f"{tag} OK [READ-WRITE] selected")
            elif cmd == "UID":
                self.uid(tag, args)
            elif cmd == "EXPUNGE":
                with s.lock:
                    for uid in sorted(s.deleted):
                        s.messages.pop(uid, None)
                    s.deleted.clear()
                self.send(f"{tag} OK expunged")
            elif cmd == "LOGOUT":
                self.send("* BYE")
                self.send(f"{tag} OK bye")
                return
            else:
                self.send(f"{tag} BAD unknown command")

    def uid(self, tag: str, args: str) -> None:
        s = self.server
        sub, _sp, rest = args.partition(" ")
        sub = sub.upper()
        if sub == "SEARCH":
            uids = [str(u) for u in sorted(s.messages) if u not in s.deleted]
            self.send("* SEARCH " + " ".join(uids) if uids else "* SEARCH")
            self.send(f"{tag} OK search done")
        elif sub == "FETCH":
            uid = int(rest.split(" ", 1)[0])
            m = re.search(r"<0\.(\d+)>", rest)
            raw = s.messages.get(uid, b"")[: int(m.group(1)) if m else None]
            seq = sorted(s.messages).index(uid) + 1 if uid in s.messages else 0
            if seq:
                self.wfile.write(
                    f"* {seq} FETCH (UID {uid} BODY[]<0> {{{len(raw)}}}\r\n".encode()
                    + raw
                    + b")\r\n"
                )
            self.send(f"{tag} OK fetch done")
        elif sub == "STORE":
            uid = int(rest.split(" ", 1)[0])
            if "\\Deleted" in rest:
                s.deleted.add(uid)
            self.send(f"{tag} OK store done")
        else:
            self.send(f"{tag} BAD unknown UID command")


class Pop3Handler(_Handler):
    def handle(self) -> None:
        s = self.server
        user_ok = authed = False
        dele: set[int] = set()
        self.send("+OK test POP3 server ready")
        for line in self.lines():
            cmd, _sp, arg = line.partition(" ")
            cmd = cmd.upper()
            keys = sorted(s.messages)
            if cmd == "CAPA":
                self.send("+OK")
                self.send("USER")
                self.send(".")
            elif cmd == "USER":
                user_ok = arg == s.user
                self.send("+OK")
            elif cmd == "PASS":
                authed = user_ok and arg == s.password
                self.send("+OK logged in" if authed else "-ERR [AUTH] invalid login")
            elif not authed:
                self.send("-ERR log in first")
            elif cmd == "STAT":
                size = sum(len(s.messages[k]) for k in keys)
                self.send(f"+OK {len(keys)} {size}")
            elif cmd == "RETR":
                raw = s.messages[keys[int(arg) - 1]]
                self.send(f"+OK {len(raw)} octets")
                for body_line in raw.split(b"\r\n") if b"\r\n" in raw else raw.split(b"\n"):
                    self.send(b"." + body_line if body_line.startswith(b".") else body_line)
                self.send(".")
            elif cmd == "DELE":
                dele.add(keys[int(arg) - 1])
                self.send("+OK deleted")
            elif cmd == "QUIT":
                with s.lock:
                    for k in dele:
                        s.messages.pop(k, None)
                self.send("+OK bye")
                return
            else:
                self.send("-ERR unknown command")


def imap_server(ctx: ssl.SSLContext, user: str, password: str) -> _Server:
    return _Server(ImapHandler, ctx, user, password)


def pop3_server(ctx: ssl.SSLContext, user: str, password: str) -> _Server:
    return _Server(Pop3Handler, ctx, user, password)
