"""Interop test: matrix-nio, a third-party Matrix client, drives a running sandcat.

Two users, a private room, invite, join, messages both ways seen through /sync, a redaction,
typing and a read receipt. Exits non-zero on the first failure.

Usage: python nio_interop.py http://127.0.0.1:PORT
"""

import asyncio
import sys
import uuid

from nio import (
    AsyncClient,
    InviteMemberEvent,
    JoinResponse,
    LoginResponse,
    RedactedEvent,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    RegisterResponse,
    SyncResponse,
    TypingNoticeEvent,
    ReceiptEvent,
)

HS = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8008"
RUN = uuid.uuid4().hex[:8]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok: {what}", flush=True)


async def account(name):
    client = AsyncClient(HS, f"@{name}:localhost")
    resp = await client.register(name, "pw-" + name)
    check(isinstance(resp, RegisterResponse), f"register {name} ({resp})")
    await client.close()
    client = AsyncClient(HS, f"@{name}:localhost")
    resp = await client.login("pw-" + name, device_name="nio")
    check(isinstance(resp, LoginResponse), f"login {name} ({resp})")
    return client


async def sync_until(client, pred, what, rounds=20):
    for _ in range(rounds):
        resp = await client.sync(timeout=3000)
        check_type = isinstance(resp, SyncResponse)
        if not check_type:
            check(False, f"sync for {what}: {resp}")
        found = pred(resp)
        if found:
            check(True, f"saw {what}")
            return found
    check(False, f"saw {what}")


def timeline(resp, room_id):
    room = resp.rooms.join.get(room_id)
    return room.timeline.events if room else []


def ephemeral(resp, room_id):
    room = resp.rooms.join.get(room_id)
    return room.ephemeral if room else []


async def main():
    alice = await account(f"alice{RUN}")
    bob = await account(f"bob{RUN}")
    await alice.sync(timeout=0)
    await bob.sync(timeout=0)

    created = await alice.room_create(name="nio room", invite=[bob.user_id])
    check(isinstance(created, RoomCreateResponse), f"room_create ({type(created).__name__})")
    room_id = created.room_id

    await sync_until(bob, lambda r: room_id in r.rooms.invite and r, "bob's invite")
    joined = await bob.join(room_id)
    check(isinstance(joined, JoinResponse), f"bob joins ({type(joined).__name__}: {getattr(joined, 'message', '')})")

    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"})
    check(isinstance(sent, RoomSendResponse), "alice sends")
    got = await sync_until(
        bob,
        lambda r: [e for e in timeline(r, room_id) if isinstance(e, RoomMessageText) and e.body == "hello bob"],
        "alice's message at bob",
    )
    check(got[0].sender == alice.user_id, "sender is alice")

    reply = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
    check(isinstance(reply, RoomSendResponse), "bob replies")
    await sync_until(
        alice,
        lambda r: [e for e in timeline(r, room_id) if isinstance(e, RoomMessageText) and e.body == "hi alice"],
        "bob's reply at alice",
    )

    typing = await bob.room_typing(room_id, typing_state=True, timeout=10000)
    check(typing.__class__.__name__ == "RoomTypingResponse", f"bob types ({type(typing).__name__})")
    await sync_until(
        alice,
        lambda r: [e for e in ephemeral(r, room_id) if isinstance(e, TypingNoticeEvent) and bob.user_id in e.users],
        "bob typing at alice",
    )

    receipt = await bob.room_read_markers(room_id, fully_read_event=sent.event_id, read_event=sent.event_id)
    check(receipt.__class__.__name__ == "RoomReadMarkersResponse", f"bob's read receipt ({type(receipt).__name__})")
    await sync_until(
        alice,
        lambda r: [e for e in ephemeral(r, room_id) if isinstance(e, ReceiptEvent)
                   and any(rc.event_id == sent.event_id and rc.user_id == bob.user_id for rc in e.receipts)],
        "bob's receipt at alice",
    )

    redacted = await alice.room_redact(room_id, sent.event_id, reason="typo")
    check(redacted.__class__.__name__ == "RoomRedactResponse", f"alice redacts ({type(redacted).__name__})")
    await sync_until(
        bob,
        lambda r: [e for e in timeline(r, room_id) if isinstance(e, RedactedEvent) or getattr(e, "redacts", None) == sent.event_id],
        "the redaction at bob",
    )
    ctx = await bob.room_context(room_id, sent.event_id, limit=1)
    check(getattr(ctx, "event", None) is not None and isinstance(ctx.event, RedactedEvent), f"the message is redacted ({type(ctx).__name__})")

    msgs = await bob.room_messages(room_id, start="", limit=50)
    bodies = [e.body for e in msgs.chunk if isinstance(e, RoomMessageText)]
    check("hi alice" in bodies, "history through /messages")

    await alice.close()
    await bob.close()
    print(f"{checks} passed, 0 failed", flush=True)


asyncio.run(main())
