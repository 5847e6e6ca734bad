"""Federation benchmark: Sandcat and Synapse federating over loopback TLS, beside two Synapses.

Measures, with matrix-nio as the client on every server:
  - joining a room of another server that has MEMBERS members: a Sandcat user joining a
    Synapse room, a Synapse user joining a Sandcat room, and (the peer) a second Synapse's
    user joining the same Synapse room;
  - message delivery across servers (send -> the other server's /sync), one message at a
    time, both directions between Sandcat and Synapse, and between the two Synapses.

Usage: python federation.py SANDCAT_URL SANDCAT_NAME SYN1_URL SYN1_NAME SYN2_URL SYN2_NAME
       MEMBERS MESSAGES OUT.json
"""

import asyncio
import json
import statistics
import sys
import time
import uuid
from urllib.parse import quote

from nio import AsyncClient, LoginResponse, RegisterResponse, RoomCreateResponse, RoomVisibility

(SANDCAT, SANDCAT_NAME, SYN1, SYN1_NAME, SYN2, SYN2_NAME) = sys.argv[1:7]
MEMBERS, MESSAGES, OUT = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
RUN = uuid.uuid4().hex[:6]


async def account(hs, server, name):
    c = AsyncClient(hs, f"@{name}:{server}", ssl=False)
    r = await c.register(name, "pw-" + name)
    if not isinstance(r, RegisterResponse):
        await c.close()
        c = AsyncClient(hs, f"@{name}:{server}", ssl=False)
        r = await c.login("pw-" + name)
        assert isinstance(r, LoginResponse), r
    await c.sync(timeout=0)
    return c


async def join_via(client, room_id, server):
    path = f"/_matrix/client/v3/join/{quote(room_id)}?via={quote(server)}"
    r = await client.send(
        "POST", path, "{}", headers={"Authorization": f"Bearer {client.access_token}"}
    )
    body = await r.json()
    assert r.status == 200, body
    return body


async def crowded_room(hs, server, owner, members):
    """A public room of `owner` with `members` joined users of the same server."""
    r = await owner.room_create(visibility=RoomVisibility.public, name="crowd")
    assert isinstance(r, RoomCreateResponse), r
    room = r.room_id
    sem = asyncio.Semaphore(8)

    async def one(i):
        async with sem:
            c = await account(hs, server, f"m{RUN}x{i}")
            await c.join(room)
            await c.close()

    await asyncio.gather(*(one(i) for i in range(members)))
    return room


async def timed_join(client, room, via):
    t = time.perf_counter()
    await join_via(client, room, via)
    return round((time.perf_counter() - t) * 1000, 1)


async def delivery(sender, receiver, room, n):
    """Milliseconds from each send until the receiver's /sync has it, one at a time."""
    out = []
    await receiver.sync(timeout=0)
    for i in range(n):
        body = f"lat {RUN} {i}"
        t = time.perf_counter()
        await sender.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body})
        seen = False
        while not seen:
            r = await receiver.sync(timeout=5000)
            room_sync = r.rooms.join.get(room)
            if room_sync and any(getattr(e, "body", None) == body for e in room_sync.timeline.events):
                seen = True
            if time.perf_counter() - t > 30:
                raise RuntimeError(f"message {i} never arrived")
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(samples):
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
    return {"n": len(s), "p50_ms": round(statistics.median(s), 1), "p99_ms": round(p99, 1)}


async def main():
    sam = await account(SANDCAT, SANDCAT_NAME, f"sam{RUN}")
    syd = await account(SYN1, SYN1_NAME, f"syd{RUN}")
    sue = await account(SYN2, SYN2_NAME, f"sue{RUN}")
    results = {"members": MEMBERS, "messages": MESSAGES}

    # Joining a crowded room of another server.
    syn_room = await crowded_room(SYN1, SYN1_NAME, syd, MEMBERS)
    results["join_synapse_room_from_sandcat_ms"] = await timed_join(sam, syn_room, SYN1_NAME)
    results["join_synapse_room_from_synapse_ms"] = await timed_join(sue, syn_room, SYN1_NAME)
    sand_room = await crowded_room(SANDCAT, SANDCAT_NAME, sam, MEMBERS)
    results["join_sandcat_room_from_synapse_ms"] = await timed_join(sue, sand_room, SANDCAT_NAME)

    # Delivery across servers, in a small room the three share.
    r = await syd.room_create(visibility=RoomVisibility.public, name="latency")
    room = r.room_id
    await join_via(sam, room, SYN1_NAME)
    await join_via(sue, room, SYN1_NAME)
    await asyncio.sleep(1)
    results["synapse_to_sandcat"] = summary(await delivery(syd, sam, room, MESSAGES))
    results["sandcat_to_synapse"] = summary(await delivery(sam, syd, room, MESSAGES))
    results["synapse_to_synapse"] = summary(await delivery(syd, sue, room, MESSAGES))

    for c in (sam, syd, sue):
        await c.close()
    with open(OUT, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


asyncio.run(main())
