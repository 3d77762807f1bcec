"""A nats-py worker for procwire's durable pool, written from the wire
format alone (docs/wire-format.md, section 14): it proves that any NATS
client can work for `procwire pool --listen nats://HOST:PORT/NAME`.

    nats_worker.py nats://HOST:PORT NAME

Answers each task with its bytes and "?"; exits when the pool ends its run
(its streams go), printing how many it answered.
"""

import asyncio
import sys

import nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError


def stream_name(subject):
    clean = "".join(c if (c.isascii() and c.isalnum()) or c == "-" else "_" for c in subject)
    h = 0x811C9DC5
    for b in subject.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return f"PW_{clean}_{h:08x}"


async def main():
    server, name = sys.argv[1], sys.argv[2]
    nc = await nats.connect(server)
    js = nc.jetstream()
    tasks = stream_name(name) + "_TASKS"
    # The pool makes the streams and the consumer: wait for them.
    for _ in range(200):
        try:
            await js.consumer_info(tasks, "workers")
            break
        except Exception:
            await asyncio.sleep(0.1)
    sub = await js.pull_subscribe_bind("workers", tasks)
    answered = 0
    while True:
        try:
            msgs = await sub.fetch(1, timeout=1)
        except Exception:
            try:
                await js.stream_info(tasks)
            except NotFoundError:
                break  # the run ended
            continue
        for m in msgs:
            n = m.subject.rsplit(".", 1)[1]
            headers = {"Procwire-Input-Hash": (m.headers or {}).get("Procwire-Input-Hash", "")}
            try:
                await js.publish(f"{name}.answer.{n}", m.data + b"?", headers=headers)
            except Exception as e:
                if "maximum messages per subject" not in str(e):
                    raise  # an answer already there is the answer
            try:
                await m.ack_sync()
            except (NoRespondersError, NatsTimeoutError):
                # Not confirmed, as the Rust worker treats it: the pool,
                # which had every answer, may be deleting its streams (the
                # next fetch finds the tasks stream gone), or the server is
                # slow (the task comes again after ack_wait, and the answer
                # stored stands).
                pass
            answered += 1
    print(f"answered {answered}", flush=True)
    await nc.close()


asyncio.run(main())
