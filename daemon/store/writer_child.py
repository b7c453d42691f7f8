"""The writer process's own side (`python -m daemon.store.writer_child`): read batches on
stdin, write each in one transaction with `Store.dispatch_many`, answer on stdout."""

from __future__ import annotations

import signal
import sys

import orjson

from ..secrets import redactor
from .store import Store
from .wire import decode_batch, encode_error, encode_results, frame, read_frame_sync


def main() -> None:
    """The child: read batches on stdin, write each in one transaction, answer on stdout."""
    # The daemon stops it by closing its input; a Ctrl-C or SIGTERM to the process group must
    # not cut a transaction short while the daemon is still shutting down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    hello = read_frame_sync(stdin)
    if hello is None:
        return
    try:
        store = Store(orjson.loads(hello)["url"], checkpoint=False)
    except Exception as exc:
        stdout.write(frame(orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})))
        stdout.flush()
        return
    stdout.write(frame(b'{"ready":true}'))
    stdout.flush()
    try:
        while (content := read_frame_sync(stdin)) is not None:
            try:
                requests, secrets = decode_batch(content)
                for value in secrets:
                    redactor.register(value)
                out = encode_results(store.dispatch_many(requests))
            except Exception as exc:
                # Nothing of the batch is stored (one transaction); the message may quote
                # parameters, so it is redacted before it leaves.
                out = encode_error(redactor.redact(f"{type(exc).__name__}: {exc}"))
            stdout.write(out)
            stdout.flush()
    finally:
        store.close()


if __name__ == "__main__":
    main()
