"""procwire reference peer for Python: wire format v4 (docs/wire-format.md).

It speaks stream sockets (sections 2, 6, 7, 8), which is what a procwire
parent hands a child; versions 2, 3 and 4 changed only message sockets (section 3).

Standard library plus ``msgpack`` (only for the ``msgpack`` codec).

A child started by a procwire parent takes its channel from the environment::

    import procwire
    ch = procwire.Channel.from_env()
    for job in ch:                      # ends when the parent closes its end
        ch.send(f"{job} accomplished!")
"""

import json
import os
import socket
import struct

VERSION = "4"
DEFAULT_MAX_FRAME = 64 << 20
_HEADER = struct.Struct(">I")  # 4-byte unsigned big-endian length


class ProcwireError(Exception):
    """Base class of this module's errors."""


class Disconnected(ProcwireError):
    """The peer closed the channel cleanly: every message was received."""


class UnexpectedEof(ProcwireError):
    """The peer closed the stream in the middle of a frame."""


class FrameTooLarge(ProcwireError):
    """A frame exceeds the maximum payload length."""


def _codec(name):
    if name == "msgpack":
        import msgpack  # imported here so that other codecs need no package

        return (
            lambda v: msgpack.packb(v, use_bin_type=True),
            lambda b: msgpack.unpackb(b, raw=False),
        )
    if name == "json":
        return (
            lambda v: json.dumps(v, separators=(",", ":")).encode(),
            lambda b: json.loads(b.decode()),
        )
    if name == "raw":
        return (lambda v: v.encode() if isinstance(v, str) else bytes(v), bytes)
    raise ProcwireError(f"codec {name!r} is not available in the Python peer")


class Channel:
    """A two-way framed channel over a connected stream socket."""

    def __init__(self, sock, codec="msgpack", max_frame=DEFAULT_MAX_FRAME):
        if sock.type != socket.SOCK_STREAM:
            raise ProcwireError("a procwire channel needs a SOCK_STREAM socket")
        self.sock = sock
        self.codec = codec
        self.max_frame = max_frame
        self._encode, self._decode = _codec(codec)

    @classmethod
    def from_env(cls, max_frame=DEFAULT_MAX_FRAME):
        """The channel a procwire parent handed this process."""
        version = os.environ.get("PROCWIRE_VERSION")
        if version != VERSION:
            raise ProcwireError(
                f"PROCWIRE_VERSION={version!r}; this peer speaks version {VERSION} only"
            )
        codec = os.environ.get("PROCWIRE_CODEC")
        if codec is None:
            raise ProcwireError("PROCWIRE_CODEC is not set")
        try:
            fd = int(os.environ["PROCWIRE_FD"])
        except (KeyError, ValueError):
            raise ProcwireError("PROCWIRE_FD is not set to a descriptor number")
        sock = socket.socket(fileno=fd)  # checks that it is a socket
        os.set_inheritable(fd, False)  # close-on-exec: no leak to our children
        return cls(sock, codec, max_frame)

    def send(self, value):
        """Sends one message as one frame."""
        payload = self._encode(value)
        if len(payload) > self.max_frame:
            raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds {self.max_frame}")
        self.sock.sendall(_HEADER.pack(len(payload)) + payload)

    def recv(self):
        """The next message; raises Disconnected at a clean end of stream."""
        header = self._read(_HEADER.size, at_boundary=True)
        (length,) = _HEADER.unpack(header)
        if length > self.max_frame:
            # Checked before anything is allocated for the payload.
            raise FrameTooLarge(f"frame of {length} bytes exceeds {self.max_frame}")
        return self._decode(self._read(length, at_boundary=False))

    def _read(self, n, at_boundary):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                if at_boundary and got == 0:
                    raise Disconnected("the peer closed the channel")
                raise UnexpectedEof(f"peer closed the stream after {got} of {n} bytes")
            got += k
        return bytes(buf)

    def hello(self, sends, receives):
        """The optional hello (wire format section 7): exchange and check.
        `sends` and `receives` are the wire names of the types (section 7:
        "string", "u32", "bytes", ... or the program's own, such as
        "lesson.Job"), the same names the Rust side declares."""
        self.send({"procwire": int(VERSION), "sends": sends, "receives": receives})
        theirs = self.recv()
        if (
            theirs.get("procwire") != int(VERSION)
            or theirs.get("sends") != receives
            or theirs.get("receives") != sends
        ):
            raise ProcwireError(f"the peer does not match: {theirs!r}")

    def serve(self, handler):
        """Answers RPC calls until the caller closes the channel (wire format
        section 8): each call {"id", "body"} gets {"id", "body": {"Ok": result}}
        or, if the handler raises, {"id", "body": {"Err": message}}."""
        for call in self:
            try:
                body = {"Ok": handler(call["body"])}
            except Exception as e:  # the caller gets the message
                body = {"Err": f"{type(e).__name__}: {e}"}
            self.send({"id": call["id"], "body": body})

    def call(self, request):
        """One RPC call, waiting for its reply (one caller at a time)."""
        self._next_id = getattr(self, "_next_id", 0) + 1
        self.send({"id": self._next_id, "body": request})
        reply = self.recv()
        if reply.get("id") != self._next_id:
            raise ProcwireError(f"reply to call {reply.get('id')}, expected {self._next_id}")
        body = reply["body"]
        if "Err" in body:
            raise ProcwireError(f"the handler failed: {body['Err']}")
        return body["Ok"]

    def __iter__(self):
        while True:
            try:
                yield self.recv()
            except Disconnected:
                return

    def close(self):
        self.sock.close()
