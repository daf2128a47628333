#!/usr/bin/python3
"""Parse a raw message with Python's email package and print it as JSON.

    /usr/bin/python3 spec/support/mimeparse.py [--no-payload] [FILE]
    /usr/bin/python3 spec/support/mimeparse.py --smtpd-record RECORD

The message comes from FILE, from standard input, or (--smtpd-record) from
the data of the last "message" record that smtpd.py wrote to RECORD, so
that a large message need not pass through Lua (payloads are then left
out: compare size and sha256). It is parsed with
email.parser.BytesParser and policy=email.policy.default: an independent
MIME implementation to check the composer against.

The JSON (an object):
  headers      { Name = decoded value } for Subject, From, To, Cc, Reply-To,
               Date, Message-ID, MIME-Version, Content-Type, Content-
               Transfer-Encoding and every X- header (the first of each
               name; as the message spells the name)
  header_list  [ [name, decoded value], ... ]: every top-level header, in order
  addresses    { From/To/Cc/Reply-To/Sender = [ { name, display_name,
               address }, ... ] }: display_name is what policy.default's
               address parser says; name is the same display name decoded
               by email.header, which drops the whitespace between adjacent
               encoded-words as RFC 2047 6.2 says. They differ only where
               policy.default keeps that whitespace (CPython gh-128110,
               present in Debian 12's Python 3.11), so compare with name.
  date         the Date header as Python reads it (ISO 8601), when it can
  header_lines [ raw line, ... ]: the top-level header section, one entry
               per physical line (without the line end)
  tree         the root part (below)
  defects      [ "path: DefectClass: text", ... ]: msg.defects of every part
               and the defects of every header, "" path for the root
  max_line     the longest raw line of the input, in octets, line end
               (CRLF or LF) not counted
  lf_only      true when no line of the input ends in CRLF
  size         octets of the input

A part:
  path              "" for the root, "1", "1.2", ... below it
  content_type      "text/plain", "multipart/mixed", ...
  charset           the charset parameter (lower case), or absent
  boundary          multipart only
  transfer_encoding the Content-Transfer-Encoding (lower case), or absent
  disposition       "inline", "attachment", or absent
  filename          decoded (RFC 2231 / RFC 2047), or absent
  name              the Content-Type's name parameter, decoded, or absent
  content_id        the Content-ID header, or absent
  header_lines      the part's raw header lines (parts below the root)
  parts             multipart only: the sub-parts
  payload_b64       leaf only: the decoded body (after base64/QP), base64
                    (left out with --no-payload)
  size, sha256      leaf only: of the decoded body
  encoded_max_line  leaf only: the longest line of the body as sent (still
                    in its transfer encoding), line end not counted
  text              text/* leaf only: the body decoded from its charset
                    (strictly: when that fails, text_error says why)
"""

import base64
import email.header
import email.parser
import email.policy
import email.utils
import hashlib
import json
import re
import sys

TOP_HEADERS = ["Subject", "From", "To", "Cc", "Reply-To", "Date", "Message-ID",
               "MIME-Version", "Content-Type", "Content-Transfer-Encoding"]
ADDRESS_HEADERS = ["From", "To", "Cc", "Reply-To", "Sender"]


def header_text(value):
    # Header objects of policy.default are str subclasses, already decoded.
    return str(value)


def defect_text(path, where, defect):
    name = type(defect).__name__
    detail = str(defect)
    return "%s: %s%s%s" % (path, where, name, (": " + detail) if detail else "")


def raw_header_lines(raw_head):
    return [line.decode("latin-1") for line in raw_head.split(b"\n") if line != b""] \
        if raw_head is not None else []


def split_head(raw):
    """The raw header section of a part (bytes), up to its blank line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[:i].replace(b"\r\n", b"\n")
    return raw.replace(b"\r\n", b"\n")


def rfc2047_names(raw_value):
    """Display names of a raw address header, decoded as RFC 2047 says
    (whitespace between adjacent encoded-words ignored); None when the
    legacy parser cannot make them out."""
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", raw_value)
    try:
        names = []
        for name, _ in email.utils.getaddresses([unfolded]):
            names.append(str(email.header.make_header(email.header.decode_header(name))) if name else "")
        return names
    except Exception:  # noqa: BLE001 -- any failure: fall back to policy.default
        return None


def describe(part, path, options, defects):
    for d in part.defects:
        defects.append(defect_text(path, "", d))
    for name, value in part.items():
        for d in getattr(value, "defects", ()):
            defects.append(defect_text(path, name + " header: ", d))
    node = {"path": path, "content_type": part.get_content_type()}
    charset = part.get_param("charset")
    if charset is not None:
        node["charset"] = str(charset).lower()
    cte = part.get("Content-Transfer-Encoding")
    if cte is not None:
        node["transfer_encoding"] = str(cte).strip().lower()
    disposition = part.get_content_disposition()
    if disposition is not None:
        node["disposition"] = disposition
    filename = part.get_filename()
    if filename is not None:
        node["filename"] = filename
    ctype = part.get("Content-Type")
    name = getattr(ctype, "params", {}).get("name") if ctype is not None else None
    if name is not None:
        node["name"] = str(name)
    cid = part.get("Content-ID")
    if cid is not None:
        node["content_id"] = str(cid)
    if part.is_multipart():
        node["boundary"] = part.get_boundary()
        node["parts"] = [describe(sub, (path + "." if path else "") + str(i), options, defects)
                         for i, sub in enumerate(part.iter_parts(), 1)]
        return node
    encoded = part.get_payload(decode=False)
    if isinstance(encoded, str):
        node["encoded_max_line"] = max(len(line.rstrip("\r")) for line in encoded.split("\n"))
    payload = part.get_payload(decode=True) or b""
    node["size"] = len(payload)
    node["sha256"] = hashlib.sha256(payload).hexdigest()
    if not options["no_payload"]:
        node["payload_b64"] = base64.b64encode(payload).decode("ascii")
    if part.get_content_maintype() == "text":
        try:
            node["text"] = payload.decode(charset or "us-ascii")
        except (LookupError, UnicodeDecodeError) as e:
            node["text_error"] = str(e)
    return node


def part_header_lines(raw, node):
    """Fill header_lines of the parts below the root, found by boundary."""
    if "parts" not in node:
        return
    delim = b"--" + node["boundary"].encode("ascii", "surrogateescape")
    pieces = raw.split(b"\n" + delim)
    # pieces[0] is the preamble; the last one starts with "--" (the close).
    bodies = [p.split(b"\n", 1)[1] if b"\n" in p else b"" for p in pieces[1:]
              if not p.startswith(b"--")]
    for sub, body in zip(node["parts"], bodies):
        sub["header_lines"] = raw_header_lines(split_head(body))
        part_header_lines(body, sub)


def message_bytes(args):
    if args and args[0] == "--smtpd-record":
        data = None
        with open(args[1], "rb") as f:
            for line in f:
                record = json.loads(line)
                if record.get("type") == "message":
                    data = record["data_b64"]
        if data is None:
            raise SystemExit("mimeparse.py: no message in " + args[1])
        return base64.b64decode(data)
    if args:
        with open(args[0], "rb") as f:
            return f.read()
    return sys.stdin.buffer.read()


def main(argv):
    options = {"no_payload": False}
    args = []
    for a in argv:
        if a == "--no-payload":
            options["no_payload"] = True
        else:
            args.append(a)
    if args and args[0] == "--smtpd-record":
        options["no_payload"] = True
    raw = message_bytes(args)
    msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    defects = []
    out = {"headers": {}, "header_list": [], "addresses": {}}
    for name, value in msg.items():
        text = header_text(value)
        out["header_list"].append([name, text])
        wanted = name.lower() in [h.lower() for h in TOP_HEADERS] or name.lower().startswith("x-")
        if wanted and not any(k.lower() == name.lower() for k in out["headers"]):
            out["headers"][name] = text
    raw_values = {}
    for name, value in msg.raw_items():
        raw_values.setdefault(name.lower(), value)
    for name in ADDRESS_HEADERS:
        value = msg.get(name)
        if value is None:
            continue
        try:
            addresses = list(value.addresses)
        except AttributeError:
            defects.append("%s header: not an address header" % name)
            continue
        names = rfc2047_names(raw_values[name.lower()])
        if names is None or len(names) != len(addresses):
            names = [a.display_name for a in addresses]
        out["addresses"][name] = [{"name": n, "display_name": a.display_name, "address": a.addr_spec}
                                  for n, a in zip(names, addresses)]
    date = msg.get("Date")
    if date is not None and getattr(date, "datetime", None) is not None:
        out["date"] = date.datetime.isoformat()
    tree = describe(msg, "", options, defects)
    normalized = raw.replace(b"\r\n", b"\n")
    part_header_lines(normalized, tree)
    out["tree"] = tree
    out["header_lines"] = raw_header_lines(split_head(raw))
    out["defects"] = defects
    longest = 0
    for line in raw.split(b"\n"):
        n = len(line) - (1 if line.endswith(b"\r") else 0)
        longest = max(longest, n)
    out["max_line"] = longest
    out["lf_only"] = b"\r\n" not in raw
    out["size"] = len(raw)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
