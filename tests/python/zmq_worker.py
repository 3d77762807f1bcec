"""A remote-pool worker in pyzmq: the flow of procwire's remote pool
(src/remote/pool.rs), nothing else. Appends "!" to each task.

    zmq_worker.py ENDPOINT      (libzmq syntax: tcp://HOST:PORT)
"""

import sys

import msgpack
import zmq


def main():
    s = zmq.Context().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 2000)
    s.connect(sys.argv[1])
    s.send(msgpack.packb(["ready", 1000, b""]))
    done = 0
    while True:
        kind, task_id, data = msgpack.unpackb(s.recv())
        if kind == "bye":
            break
        if kind == "task":
            s.send(msgpack.packb(["done", task_id, data + b"!"]))
            done += 1
    print(f"pyzmq worker did {done}", file=sys.stderr)


if __name__ == "__main__":
    main()
