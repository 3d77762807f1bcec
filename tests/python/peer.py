"""A worker written against the reference peer, driven by tests/python_peer.rs."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "peers", "python"))
import procwire  # noqa: E402

mode = sys.argv[1]
if mode == "version":
    try:
        procwire.Channel.from_env()
    except procwire.ProcwireError as e:
        print(f"refused: {e}")
        sys.exit(3)
    sys.exit(0)

ch = procwire.Channel.from_env()
if mode == "msgpack":
    # Speak first: the Rust side checks an unprompted message.
    ch.send({"Hello": {"pid": os.getpid(), "codec": ch.codec}})
    for job in ch:
        shape = job["shape"]
        if isinstance(shape, dict) and "Rect" in shape:
            r = shape["Rect"]
            shape = {"Rect": {"w": r["h"], "h": r["w"]}}
        ch.send(
            {
                "Done": {
                    "id": job["id"] + 1,
                    "name": job["name"].upper(),
                    "data": bytes(reversed(job["data"])),
                    "tags": job["tags"] + [len(job["tags"])],
                    "shape": shape,
                    "note": None if job["note"] is not None else "was None",
                }
            }
        )
elif mode == "hello":
    # argv: the type names this peer claims to send and receive.
    try:
        ch.hello(sys.argv[2], sys.argv[3])
    except procwire.ProcwireError:
        sys.exit(4)
    for n in ch:
        ch.send(str(n))
elif mode == "rpc":
    # A pool worker: squares, and a handler error on 13.
    ch.serve(lambda n: n * n if n != 13 else 1 // 0)
elif mode == "caller":
    # The Python side calls; the Rust side serves.
    answers = [ch.call(n) for n in (3, 4, 13)]
    try:
        ch.call(-1)
    except procwire.ProcwireError as e:
        answers.append(str(e))
    print(answers, flush=True)
elif mode == "raw":
    for data in ch:
        ch.send(data[::-1] + b"!")
else:
    sys.exit(f"unknown mode {mode}")
