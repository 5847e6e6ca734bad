"""Interop test: an echo bot built on mautrix (the Python framework of the mautrix bridges)
runs as an application service against a running sandcat.

It writes its registration file, registers it with `sandcat appservice register` (the running
server picks it up), starts the mautrix AppService, and then a normal user driven by
matrix-nio creates a room and invites the bot. The bot joins, receives the user's message in a
transaction, and replies as a puppet user of its namespace; the user sees the reply through
/sync. Exits non-zero on the first failure.

Usage: python mautrix_echo.py http://127.0.0.1:PORT SANDCAT_BINARY DATA_DIR
(SANDCAT_BINARY runs with SANDCAT_DATA_DIR=DATA_DIR, the running server's data directory).
"""

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import uuid

import aiohttp
from mautrix.appservice import AppService
from mautrix.appservice.state_store.file import FileASStateStore
from mautrix.types import EventType, Membership, MessageEvent, StateEvent
from nio import AsyncClient, LoginResponse, RegisterResponse, RoomCreateResponse, SyncResponse

HS, BINARY, DATA = sys.argv[1], sys.argv[2], sys.argv[3]
DOMAIN = "localhost"
RUN = uuid.uuid4().hex[:6]
BOT = f"echobot{RUN}"
PUPPET = f"@echo{RUN}_puppet:{DOMAIN}"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok: {what}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def main():
    work = tempfile.mkdtemp()
    port = free_port()
    as_token, hs_token = secrets.token_hex(16), secrets.token_hex(16)
    registration = os.path.join(work, "echo.yaml")
    with open(registration, "w") as f:
        f.write(
            f"""id: echo{RUN}
url: http://127.0.0.1:{port}
as_token: {as_token}
hs_token: {hs_token}
sender_localpart: {BOT}
rate_limited: false
de.sorunome.msc2409.push_ephemeral: true
namespaces:
  users:
    - exclusive: true
      regex: "@echo{RUN}_.*:{DOMAIN}"
  aliases: []
  rooms: []
"""
        )
    env = dict(os.environ, SANDCAT_DATA_DIR=DATA)
    out = subprocess.run([BINARY, "appservice", "register", registration], env=env,
                         capture_output=True, text=True)
    check(out.returncode == 0, f"sandcat appservice register: {out.stdout.strip()} {out.stderr.strip()}")

    # The running server picks the registration up.
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(f"{HS}/_matrix/client/v3/account/whoami",
                                headers={"Authorization": f"Bearer {as_token}"}) as r:
                if r.status == 200:
                    body = await r.json()
                    break
            await asyncio.sleep(0.1)
        else:
            check(False, "the server picked up the registration")
    check(body.get("user_id") == f"@{BOT}:{DOMAIN}", f"as_token acts as the bot ({body})")

    appservice = AppService(
        server=HS, domain=DOMAIN, as_token=as_token, hs_token=hs_token, bot_localpart=BOT,
        id=f"echo{RUN}", state_store=FileASStateStore(os.path.join(work, "state.json"), binary=False),
        ephemeral_events=True,
    )
    received = asyncio.Queue()
    replied = asyncio.Event()

    async def on_event(evt):
        bot = appservice.intent
        if isinstance(evt, StateEvent) and evt.type == EventType.ROOM_MEMBER \
                and evt.state_key == bot.mxid and evt.content.membership == Membership.INVITE:
            await bot.join_room(evt.room_id)
            return
        if isinstance(evt, MessageEvent) and evt.type == EventType.ROOM_MESSAGE \
                and not evt.sender.startswith(f"@echo{RUN}") and evt.sender != bot.mxid:
            await received.put(evt)
            puppet = bot.user(PUPPET)
            await puppet.ensure_registered()
            await puppet.ensure_joined(evt.room_id, bot=bot)
            await puppet.send_text(evt.room_id, f"echo: {evt.content.body}")
            replied.set()

    appservice.matrix_event_handler(on_event)
    await appservice.start(host="127.0.0.1", port=port)
    await appservice.intent.ensure_registered()
    ms = await appservice.ping_self()
    check(ms >= 0, f"appservice ping round trip ({ms} ms)")

    # A normal user, with matrix-nio.
    name = f"human{RUN}"
    user = AsyncClient(HS, f"@{name}:{DOMAIN}")
    resp = await user.register(name, "pw-" + name)
    check(isinstance(resp, RegisterResponse), f"register {name}")
    resp = await user.login("pw-" + name)
    check(isinstance(resp, LoginResponse), "login")
    resp = await user.room_create(name="echo test", invite=[f"@{BOT}:{DOMAIN}"])
    check(isinstance(resp, RoomCreateResponse), "create a room and invite the bot")
    room_id = resp.room_id
    sync = await user.sync(timeout=0)

    # Wait for the bot to join.
    for _ in range(30):
        sync = await user.sync(timeout=2000, since=sync.next_batch)
        room = user.rooms.get(room_id)
        if room and f"@{BOT}:{DOMAIN}" in room.users:
            break
    else:
        check(False, "the bot joined the room")
    check(True, "the bot joined after its invite arrived in a transaction")

    await user.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bot"})
    evt = await asyncio.wait_for(received.get(), 20)
    check(evt.content.body == "hello bot" and evt.room_id == room_id,
          "the bot received the user's message in a transaction")
    await asyncio.wait_for(replied.wait(), 20)

    reply = None
    for _ in range(30):
        sync = await user.sync(timeout=2000, since=sync.next_batch)
        if isinstance(sync, SyncResponse) and room_id in sync.rooms.join:
            for e in sync.rooms.join[room_id].timeline.events:
                if getattr(e, "sender", None) == PUPPET and getattr(e, "body", "").startswith("echo:"):
                    reply = e
        if reply:
            break
    check(reply is not None and reply.body == "echo: hello bot",
          "the user sees the puppet's reply through /sync")

    await user.close()
    await appservice.stop()
    print(f"mautrix interop: {checks} checks passed", flush=True)


asyncio.run(main())
