"""smtplib_peer.py -- the same measurements with Python's smtplib (run with
Debian's /usr/bin/python3).  One line of numbers per run, as bench/ours.lua
prints them.

  smtplib_peer.py plain HOST PORT SECONDS        1 KiB messages over one connection: msgs/s
  smtplib_peer.py tls-connect HOST PORT SECONDS CA   SMTP_SSL + 1 message per iteration: iterations/s
  smtplib_peer.py tls-info HOST PORT CA          the negotiated TLS version and cipher
  smtplib_peer.py attach HOST PORT FILE          FILE attached with the email package: seconds, VmHWM KiB
  smtplib_peer.py idle                           VmHWM KiB with the same imports, sending nothing
"""
import smtplib
import ssl
import sys
import time
from email.message import EmailMessage


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def body(n):
    line = ("abcdefghijklmnopqrstuvwxyz" * 3)[:62] + "\r\n"
    full = n // 64
    return line * full + line[: n - 64 * full]


def message(n):
    head = ("From: a@example.com\r\nTo: b@example.com\r\nSubject: bench\r\n"
            "Message-ID: <x@example.com>\r\n\r\n")
    return (head + body(n)).encode()


def plain(host, port, seconds):
    s = smtplib.SMTP(host, int(port))
    msg = message(1024)
    n, t0, c0, limit = 0, time.monotonic(), time.process_time(), float(seconds)
    t = t0
    while t - t0 < limit:
        s.sendmail("a@example.com", ["b@example.com"], msg)
        n += 1
        t = time.monotonic()
    s.quit()
    print("%.1f %d %.1f" % (n / (t - t0), n, (time.process_time() - c0) / n * 1e6))


def context(ca):
    return ssl.create_default_context(cafile=ca)


def tls_connect(host, port, seconds, ca):
    ctx = context(ca)
    msg = message(1024)
    n, t0, c0, limit = 0, time.monotonic(), time.process_time(), float(seconds)
    t = t0
    while t - t0 < limit:
        with smtplib.SMTP_SSL(host, int(port), context=ctx) as s:
            s.sendmail("a@example.com", ["b@example.com"], msg)
        n += 1
        t = time.monotonic()
    print("%.1f %d %.1f" % (n / (t - t0), n, (time.process_time() - c0) / n * 1e6))


def tls_info(host, port, ca):
    with smtplib.SMTP_SSL(host, int(port), context=context(ca)) as s:
        print("%s %s (%s)" % (s.sock.version(), s.sock.cipher()[0], ssl.OPENSSL_VERSION))


def attach(host, port, path):
    t0 = time.monotonic()
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["To"] = "b@example.com"
    m["Subject"] = "attachment"
    m.set_content("see the attachment\n")
    with open(path, "rb") as f:
        m.add_attachment(f.read(), maintype="application", subtype="octet-stream",
                         filename="data.bin")
    with smtplib.SMTP(host, int(port)) as s:
        s.send_message(m)
    print("%.3f %d" % (time.monotonic() - t0, vm("VmHWM")))


def idle():
    print("0 %d" % vm("VmHWM"))


MODES = {"plain": plain, "tls-connect": tls_connect, "tls-info": tls_info,
         "attach": attach, "idle": idle}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
