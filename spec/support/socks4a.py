#!/usr/bin/python3
"""A small SOCKS4 and SOCKS4a proxy for the spec suite (dante 1.4 has no 4a).

    socks4a.py --port N [--listen ADDR] [--log FILE] [--pidfile FILE]
               [--mode MODE] [--stall-limit SECONDS]

Serves CONNECT on ADDR:N (127.0.0.1 by default) and relays to loopback
destinations only; any other destination is refused with code 91. The pid
file is written once the socket listens, so that its presence means ready.
With --port 0 it binds a free port, prints "PORT <n> PID <pid>" once it
listens, and exits when nobody reads its stdout pipe any more (so that one
a spec started dies with the test run), as smtpd.py does.

Each request is appended to FILE as one JSON object per line, with what the
client sent, before anything is resolved:

    {"userid": "alice", "host": "localhost", "port": 2525,
     "name": true, "mode": "relay", "result": "granted"}

"host" is the name for SOCKS4a ("name": true), which proves the client left
the lookup to the proxy, or the dotted quad for SOCKS4. "result" is one of
granted, unreachable, refused, garbage, stalled, closed, and malformed
for a request that is not a SOCKS4 CONNECT (answered with 91).

MODE scripts misbehaviour for tests:
    relay    (default) connect and relay; 91 when the destination fails
    close    close each connection as soon as it is accepted, reading nothing
    stall    read the request, then never answer (until the client leaves,
             or for --stall-limit seconds, after which it closes: a spec
             that waits in vain then fails instead of hanging)
    garbage  answer the request with bytes that are no SOCKS4 reply
    refuse   answer the request with 91, "request rejected or failed"
    coalesce relay, but hold the reply until the destination's first bytes
             (an SMTP greeting) arrive, and send both in one write: the
             client must keep what comes behind the reply (after 2 s of
             silence from the destination the reply goes alone)
A client picks a mode other than "close" for one connection by sending the
mode's name as its user id; any other user id gets --mode.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import stat
import struct
import sys

MODES = ("relay", "close", "stall", "garbage", "refuse", "coalesce")
GRANTED, REJECTED = 90, 91
FIELD_MAX = 255          # user id and host name, as our client bounds them
GARBAGE = b"garbage!"    # 'g' is no reply version (0)
SILENT = ()              # a port probe: not worth a record


class Log:
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, record):
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()


def reply(code):
    return struct.pack("!BBH4s", 0, code, 0, bytes(4))


async def read_field(reader):
    """A NUL-terminated string, bounded; None when it is not."""
    try:
        raw = await reader.readuntil(b"\0")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    if len(raw) > FIELD_MAX + 1:
        return None
    return raw[:-1].decode("utf-8", "surrogateescape")


async def read_request(reader):
    """(userid, host, port, is_name); None for anything but CONNECT, and
    SILENT for a connection closed before its first byte."""
    try:
        head = await reader.readexactly(8)
    except asyncio.IncompleteReadError as e:
        return None if e.partial else SILENT
    version, command, port, addr = struct.unpack("!BBH4s", head)
    if version != 4 or command != 1:
        return None
    userid = await read_field(reader)
    if userid is None:
        return None
    # SOCKS4a: 0.0.0.x with x nonzero means a name follows the user id.
    if addr[:3] == b"\0\0\0" and addr[3] != 0:
        host = await read_field(reader)
        if not host:
            return None
        return userid, host, port, True
    return userid, socket.inet_ntoa(addr), port, False


async def open_loopback(host, port):
    """Connect to the first loopback address of host; None if there is none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        # UnicodeError: a name the IDNA codec refuses (a label over 63
        # octets), which no resolver could look up either.
        return None
    for *_, sockaddr in infos:
        if not ipaddress.ip_address(sockaddr[0]).is_loopback:
            continue
        try:
            return await asyncio.open_connection(sockaddr[0], sockaddr[1])
        except OSError:
            continue
    return None


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def relay(reader, writer, upstream, coalesce=False):
    up_reader, up_writer = upstream
    first = b""
    if coalesce:
        try:
            first = await asyncio.wait_for(up_reader.read(65536), 2)
        except asyncio.TimeoutError:
            pass
    writer.write(reply(GRANTED) + first)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    up_writer.close()


async def serve(reader, writer, args, log):
    try:
        if args.mode == "close":
            log.write({"mode": "close", "result": "closed"})
            return
        request = await read_request(reader)
        if request == SILENT:
            return
        if request is None:
            log.write({"mode": args.mode, "result": "malformed"})
            writer.write(reply(REJECTED))
            return
        userid, host, port, is_name = request
        mode = userid if userid in MODES and userid != "close" else args.mode
        record = {"userid": userid, "host": host, "port": port,
                  "name": is_name, "mode": mode}
        if mode == "stall":
            log.write(dict(record, result="stalled"))

            async def drain():
                while await reader.read(4096):
                    pass
            try:
                await asyncio.wait_for(drain(), args.stall_limit)
            except asyncio.TimeoutError:
                pass
        elif mode == "garbage":
            log.write(dict(record, result="garbage"))
            writer.write(GARBAGE)
        elif mode == "refuse":
            log.write(dict(record, result="refused"))
            writer.write(reply(REJECTED))
        else:
            upstream = await open_loopback(host, port)
            # Logged before relaying: a session may last the whole test.
            log.write(dict(record, result="granted" if upstream else "unreachable"))
            if upstream is None:
                writer.write(reply(REJECTED))
                return
            await relay(reader, writer, upstream, coalesce=mode == "coalesce")
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def watch_stdout(loop):
    """Exit once the last reader of our stdout pipe closed it: epoll reports
    an error on the write end, which asyncio hands to a reader callback."""
    fd = sys.stdout.fileno()
    if stat.S_ISFIFO(os.fstat(fd).st_mode):
        loop.add_reader(fd, lambda: os._exit(0))


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--log")
    parser.add_argument("--pidfile")
    parser.add_argument("--mode", choices=MODES, default="relay")
    parser.add_argument("--stall-limit", type=float, default=None,
                        help="seconds a stalled connection stays open (default: until the client leaves)")
    args = parser.parse_args()
    log = Log(args.log)
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, args, log), args.listen, args.port,
        reuse_address=True)
    if args.pidfile:
        with open(args.pidfile, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    if args.port == 0:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port} PID {os.getpid()}", flush=True)
        watch_stdout(asyncio.get_running_loop())
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
