"""A MongoDB wire-protocol server for the tests: mongoeco (PyPI) behind its wire proxy.

Usage: python mongo_wire.py PORT [memory | PATH.sqlite]

mongoeco 4.11 encodes cursor ids as 32-bit integers and expects them back the same way; the
Rust `mongodb` driver (like every official driver) uses 64-bit cursor ids, and sends the
numeric options of a command (`limit`, `batchSize`, `skip`, ...) as 64-bit integers, which
mongoeco refuses. The two adapters below convert the cursor ids in both directions and the
command's numeric options on the way in; documents are left as they are.
"""

import asyncio
import signal
import sys

import mongoeco.wire.protocol as protocol
from bson.int64 import Int64
from mongoeco.core.bson_scalars import BsonInt64
from mongoeco.engines.memory import MemoryEngine
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer

_encode = protocol.encode_wire_value
_decode = protocol.decode_wire_value


def encode_with_int64_cursors(document):
    out = _encode(document)
    cursor = out.get("cursor") if isinstance(out, dict) else None
    if isinstance(cursor, dict) and isinstance(cursor.get("id"), int):
        cursor["id"] = Int64(cursor["id"])
    return out


# Top-level numbers of commands that mongoeco wants as plain integers.
COMMAND_NUMBERS = ("getMore", "limit", "skip", "batchSize", "maxTimeMS", "ntoreturn")


def plain_int(value):
    return int(value.value) if isinstance(value, BsonInt64) else value


def decode_int64_cursors(value):
    out = _decode(value)
    if isinstance(out, dict):
        for key in COMMAND_NUMBERS:
            if key in out:
                out[key] = plain_int(out[key])
        if "killCursors" in out and isinstance(out.get("cursors"), list):
            out["cursors"] = [plain_int(c) for c in out["cursors"]]
    return out


protocol.encode_wire_value = encode_with_int64_cursors
protocol.decode_wire_value = decode_int64_cursors


async def main():
    port = int(sys.argv[1])
    storage = sys.argv[2] if len(sys.argv) > 2 else "memory"
    engine = MemoryEngine() if storage == "memory" else SQLiteEngine(storage)
    server = AsyncMongoEcoProxyServer(engine=engine, host="127.0.0.1", port=port)
    address = await server.start()
    print("listening on", address.uri, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


asyncio.run(main())
