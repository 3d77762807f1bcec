"""A pyzmq (libzmq) peer for procwire's ZeroMQ interoperability tests.

    zmq_peer.py MODE bind|connect ADDRESS N

Payloads are MessagePack, one per frame, as procwire's msgpack codec
writes them. Exits non-zero on any mismatch; prints a summary line.
"""

import sys

import msgpack
import zmq


def main():
    mode, how, addr, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ctx = zmq.Context()
    kind = {"rep": zmq.REP, "req": zmq.REQ, "push": zmq.PUSH, "pull": zmq.PULL,
            "dealer": zmq.DEALER, "router": zmq.ROUTER}[mode]
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 5000)
    s.setsockopt(zmq.RCVTIMEO, 20000)
    if how == "bind":
        s.bind(addr)
        # Tell the test where we are (the port, if it was a wildcard).
        print(s.getsockopt(zmq.LAST_ENDPOINT).decode(), flush=True)
    else:
        s.connect(addr)
    pack, unpack = msgpack.packb, msgpack.unpackb
    if mode == "rep":
        for _ in range(n):
            job = unpack(s.recv())
            s.send(pack(f"{job} accomplished!"))
        print(f"served {n}")
    elif mode == "req":
        for i in range(n):
            s.send(pack(f"job {i}"))
            got = unpack(s.recv())
            assert got == f"job {i} accomplished!", got
        print(f"asked {n}")
    elif mode == "push":
        for i in range(n):
            s.send(pack(i))
        print(f"pushed {n}")
    elif mode == "pull":
        total = sum(unpack(s.recv()) for _ in range(n))
        print(f"sum {total}")
    elif mode == "dealer":
        for i in range(n):
            s.send(pack(f"job {i}"))
        got = sorted(unpack(s.recv()) for _ in range(n))
        want = sorted(f"job {i} accomplished!" for i in range(n))
        assert got == want, (got[:3], want[:3])
        print(f"dealt {n}")
    elif mode == "router":
        for _ in range(n):
            frames = s.recv_multipart()
            ident, payload = frames[0], frames[-1]
            s.send_multipart(frames[:-1] + [pack(f"{unpack(payload)} accomplished!")])
        print(f"routed {n}")
    s.close()
    ctx.term()


if __name__ == "__main__":
    main()
