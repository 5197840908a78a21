"""A minimal SMTP sink for benchmarks: answers every command with the right code and parses
nothing beyond line ends and the end-of-data dot, so the sink is never the bottleneck
(aiosmtpd tops out near 5,000 messages/s on one core).

    python bench/fast_sink.py PORT   # prints "ready", then on SIGTERM/SIGINT "messages N"
"""

from __future__ import annotations

import asyncio
import signal
import sys

COUNT = 0


class SinkProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""
        self.in_data = False
        self.transport.write(b"220 fast-sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        global COUNT
        buf = self.buf + data
        out = []
        while True:
            if self.in_data:
                end = buf.find(b"\r\n.\r\n")
                if end < 0:
                    # keep only a tail long enough to hold a split terminator
                    self.buf = buf[-4:]
                    break
                buf = buf[end + 5 :]
                self.in_data = False
                COUNT += 1
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            nl = buf.find(b"\r\n")
            if nl < 0:
                self.buf = buf
                break
            line, buf = buf[:nl], buf[nl + 2 :]
            verb = line[:4].upper()
            if verb == b"DATA":
                self.in_data = True
                # The terminator search starts at the data's first line: "\r\n.\r\n" needs
                # the CRLF that ended the DATA command.
                buf = b"\r\n" + buf
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"EHLO":
                out.append(b"250-fast-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                out.append(b"221 Bye\r\n")
                self.transport.write(b"".join(out))  # type: ignore[attr-defined]
                self.transport.close()
                return
            else:
                out.append(b"250 Ok\r\n")
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, "127.0.0.1", port, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    print(f"messages {COUNT}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
