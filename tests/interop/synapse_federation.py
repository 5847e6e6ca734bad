"""Interop test: Sandcat and Synapse, the reference homeserver, federate over loopback TLS.

matrix-nio drives a user on each server: rooms created on either side are joined from the
other, by alias and by id; messages go both ways and are seen through /sync on each side;
invites go both ways, one accepted, one rejected; typing, read receipts and presence cross
both ways;
each server looks up the other's user's profile; each user reads the other's device keys,
claims a one-time key and sends a to-device message through the other server; a picture
uploaded on either server is downloaded, and thumbnailed, from the other; an encrypted DM
between a user of each server decrypts both ways (nio's own end-to-end encryption, vodozemac);
and a Sandcat native client (its REST API and bincode WebSocket) makes a group with the
Synapse user in it, and they talk. Exits non-zero on the first failure.

Usage: python synapse_federation.py SANDCAT_URL SANDCAT_NAME SYNAPSE_URL SYNAPSE_NAME
"""

import asyncio
import base64
import json
import io
import struct
import sys
import tempfile
import uuid
import zlib
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    MemoryDownloadResponse,
    ResizingMethod,
    ThumbnailResponse,
    UploadResponse,
    JoinResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMessageText,
    RoomSendResponse,
    ProfileGetDisplayNameResponse,
    ReceiptEvent,
    RoomVisibility,
    SyncResponse,
    TypingNoticeEvent,
)

SANDCAT, SANDCAT_NAME, SYNAPSE, SYNAPSE_NAME = sys.argv[1:5]
RUN = uuid.uuid4().hex[:8]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok: {what.splitlines()[0][:120]}", flush=True)


async def account(hs, server_name, name):
    user = f"@{name}:{server_name}"
    client = AsyncClient(hs, user, ssl=False)
    resp = await client.register(name, "pw-" + name)
    check(isinstance(resp, RegisterResponse), f"register {user} ({resp})")
    await client.close()
    client = AsyncClient(hs, user, ssl=False)
    resp = await client.login("pw-" + name, device_name="nio")
    check(isinstance(resp, LoginResponse), f"login {user} ({resp})")
    first = await client.sync(timeout=0)
    check(isinstance(first, SyncResponse), f"first sync of {user}")
    return client


async def sync_until(client, pred, what, rounds=30):
    """Long-polls /sync until pred(response) holds; cross-server delivery takes a moment."""
    for _ in range(rounds):
        resp = await client.sync(timeout=2000)
        check(isinstance(resp, SyncResponse) or print(resp), f"sync of {client.user_id}")
        if pred(resp):
            return resp
    check(False, what)


def has_message(room_id, body):
    def pred(resp):
        room = resp.rooms.join.get(room_id)
        return room is not None and any(
            isinstance(e, RoomMessageText) and e.body == body for e in room.timeline.events
        )

    return pred


async def join_via(client, room_id, server):
    """POST /join/{roomId}?via= — a version 12 room id names no server, so via is needed."""
    path = f"/_matrix/client/v3/join/{quote(room_id)}?via={quote(server)}"
    resp = await client.send(
        "POST", path, "{}", headers={"Authorization": f"Bearer {client.access_token}"}
    )
    body = await resp.json()
    check(resp.status == 200, f"{client.user_id} joins {room_id} via {server} ({body})")
    return body["room_id"]


async def api(client, method, path, body):
    """A raw client API call (the keys endpoints need no olm here: the keys are opaque)."""
    resp = await client.send(
        method,
        path,
        json.dumps(body),
        headers={
            "Authorization": f"Bearer {client.access_token}",
            "Content-Type": "application/json",
        },
    )
    return resp.status, await resp.json()


def fake_device_keys(client, ed):
    device = client.device_id
    return {
        "user_id": client.user_id,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device}": "Y3VydmUgb2YgdGhlIGRldmljZQ", f"ed25519:{device}": ed},
        "signatures": {client.user_id: {f"ed25519:{device}": "c2lnbmF0dXJl"}},
    }


async def keys_across(a, b):
    """B publishes keys on its server; A reads them, claims one and sends B a to-device
    message, all through A's server."""
    keys = fake_device_keys(b, "ZWQgb2Yg" + RUN)
    status, body = await api(
        b,
        "POST",
        "/_matrix/client/v3/keys/upload",
        {
            "device_keys": keys,
            "one_time_keys": {f"signed_curve25519:{RUN}": {"key": "b3RrIG9uZQ", "signatures": {}}},
        },
    )
    check(status == 200, f"{b.user_id} uploads keys ({body})")
    status, body = await api(
        a, "POST", "/_matrix/client/v3/keys/query", {"device_keys": {b.user_id: []}}
    )
    got = body.get("device_keys", {}).get(b.user_id, {}).get(b.device_id, {})
    check(status == 200 and got.get("keys") == keys["keys"], f"{a.user_id} reads {b.user_id}'s keys ({body})")
    status, body = await api(
        a,
        "POST",
        "/_matrix/client/v3/keys/claim",
        {"one_time_keys": {b.user_id: {b.device_id: "signed_curve25519"}}},
    )
    claimed = body.get("one_time_keys", {}).get(b.user_id, {}).get(b.device_id, {})
    check(status == 200 and f"signed_curve25519:{RUN}" in claimed, f"{a.user_id} claims {b.user_id}'s key ({body})")
    secret = f"for {b.user_id} {RUN}"
    status, body = await api(
        a,
        "PUT",
        f"/_matrix/client/v3/sendToDevice/org.sandcat.interop/{uuid.uuid4().hex}",
        {"messages": {b.user_id: {b.device_id: {"ciphertext": secret}}}},
    )
    check(status == 200, f"{a.user_id} sends to {b.user_id}'s device ({body})")
    await sync_until(
        b,
        lambda r: any(
            getattr(e, "source", {}).get("content", {}).get("ciphertext") == secret
            and getattr(e, "source", {}).get("sender") == a.user_id
            for e in r.to_device_events
        ),
        f"{b.user_id} gets {a.user_id}'s to-device message",
    )
    check(True, f"to-device {a.user_id} -> {b.user_id} delivered")


# --- the Sandcat native protocol: a `Msg` frame in bincode (little-endian, u64 lengths)
MSG_FIELDS = [
    ("send_id", "s"), ("receiver_id", "s"), ("local_id", "s"), ("server_id", "s"),
    ("create_time", "q"), ("send_time", "q"), ("seq", "q"), ("msg_type", "i"),
    ("content_type", "i"), ("content", "b"), ("is_read", "?"), ("group_id", "s"),
    ("platform", "i"), ("avatar", "s"), ("nickname", "s"), ("related_msg_id", "o"),
    ("send_seq", "q"),
]


def encode_msg(msg):
    out = b""
    for name, kind in MSG_FIELDS:
        v = msg.get(name)
        if kind in ("s", "b"):
            data = v.encode() if kind == "s" else v
            out += struct.pack("<Q", len(data)) + data
        elif kind == "o":
            out += b"\x00" if v is None else b"\x01" + struct.pack("<Q", len(v)) + v.encode()
        else:
            out += struct.pack("<" + kind, v)
    return out


def decode_msg(data):
    msg, at = {}, 0
    for name, kind in MSG_FIELDS:
        if kind in ("s", "b", "o"):
            if kind == "o":
                present = data[at]
                at += 1
                if not present:
                    msg[name] = None
                    continue
            (n,) = struct.unpack_from("<Q", data, at)
            at += 8
            raw = data[at : at + n]
            at += n
            msg[name] = raw if kind == "b" else raw.decode()
        else:
            (msg[name],) = struct.unpack_from("<" + kind, data, at)
            at += struct.calcsize("<" + kind)
    return msg


async def sandcat_group_with(sam, syd):
    """Sam's Sandcat client makes a group with Syd (of Synapse) in it; they talk."""
    name = sam.user_id.split(":")[0][1:]
    async with aiohttp.ClientSession() as http:
        pw = base64.b64encode(f"pw-{name}".encode()).decode().rstrip("=")
        async with http.post(f"{SANDCAT}/api/user/login", json={"account": name, "password": pw}) as r:
            login = await r.json()
            check(r.status == 200, f"Sam logs in with the Sandcat client ({login})")
        token, sid = login["token"], login["user"]["id"]
        auth = {"Authorization": f"Bearer {token}"}
        ws = await http.ws_connect(f"{login['ws_addr']}/{sid}/conn/{sid}/0/{token}")
        group = {"id": "", "owner": sid, "avatar": "", "group_name": "Cats across", "members_id": [syd.user_id]}
        async with http.post(f"{SANDCAT}/api/group/{sid}", json=group, headers=auth) as r:
            made = await r.json()
            check(r.status == 200, f"Sam makes a group with Syd in it ({made})")
        room_id = made["info"]["id"]
        await sync_until(syd, lambda r: room_id in r.rooms.invite, "Syd sees the group's invite")
        resp = await syd.join(room_id)
        check(isinstance(resp, JoinResponse), f"Syd joins the Sandcat group ({resp})")
        text = f"meow from Synapse {RUN}"
        resp = await syd.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
        check(isinstance(resp, RoomSendResponse), "Syd talks in the group")
        got = None
        for _ in range(100):
            frame = await ws.receive(timeout=10)
            if frame.type != aiohttp.WSMsgType.BINARY:
                continue
            m = decode_msg(frame.data)
            if m["msg_type"] == 1 and m["group_id"] == room_id and m["content"] == text.encode():
                got = m
                break
        check(got is not None and got["send_id"] == syd.user_id, "Syd's message reaches Sam's WebSocket")
        reply = f"purr from the Sandcat client {RUN}"
        frame = {name: "" for name, kind in MSG_FIELDS if kind == "s"}
        frame.update(
            send_id=sid, receiver_id=room_id, local_id=uuid.uuid4().hex, group_id=room_id,
            create_time=0, send_time=0, seq=0, msg_type=1, content_type=1,
            content=reply.encode(), is_read=False, platform=0, related_msg_id=None, send_seq=0,
        )
        await ws.send_bytes(encode_msg(frame))
        await sync_until(syd, has_message(room_id, reply), "Syd sees the Sandcat client's message")
        check(True, "the Sandcat client's message reaches Syd through /sync")
        await ws.close()


def png(w, h):
    """A real PNG picture of w x h, so that a thumbnail can be made of it."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(w) for v in (x % 256, y % 256, 99)) for y in range(h)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def media_across(a, b):
    """a uploads a picture to its server; b downloads it, and a thumbnail, through its own."""
    data = png(120, 80)
    resp, _ = await a.upload(
        io.BytesIO(data), content_type="image/png", filename=f"pic{RUN}.png", filesize=len(data)
    )
    check(isinstance(resp, UploadResponse), f"{a.user_id} uploads a picture ({resp})")
    mxc = resp.content_uri
    resp = await b.download(mxc=mxc)
    check(
        isinstance(resp, MemoryDownloadResponse) and resp.body == data,
        f"{b.user_id} downloads {mxc} through its server ({resp})",
    )
    check(resp.content_type == "image/png", f"the download keeps its type ({resp.content_type})")
    server, media_id = mxc[len("mxc://"):].split("/", 1)
    resp = await b.thumbnail(server, media_id, 32, 32, ResizingMethod.crop)
    check(
        isinstance(resp, ThumbnailResponse) and resp.body[:8] == b"\x89PNG\r\n\x1a\n",
        f"{b.user_id} gets a thumbnail of {mxc} ({resp})",
    )


async def crypto_round(client, timeout=1000):
    """One /sync, then what nio's sync loop would do for end-to-end encryption."""
    resp = await client.sync(timeout=timeout)
    check(isinstance(resp, SyncResponse) or print(resp), f"sync of {client.user_id}")
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    return resp


async def e2e_account(hs, server_name, name, store):
    """A user with a device that encrypts (nio's crypto store in `store`)."""
    plain = await account(hs, server_name, name)
    await plain.close()
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = AsyncClient(hs, plain.user_id, store_path=store, config=config, ssl=False)
    resp = await client.login("pw-" + name, device_name="nio-e2ee")
    check(isinstance(resp, LoginResponse), f"{client.user_id} logs in an encrypting device")
    await crypto_round(client, timeout=0)
    check(not client.should_upload_keys, f"{client.user_id} uploaded its device keys")
    return client


async def decrypted(client, room_id, body, what):
    """Syncs until `body` arrives in `room_id`, sent encrypted and decrypted here. An event
    that arrives before its room key is decrypted again once the key is here."""
    pending = []
    for _ in range(30):
        resp = await crypto_round(client, timeout=2000)
        room = resp.rooms.join.get(room_id)
        pending.extend(e for e in (room.timeline.events if room else []) if isinstance(e, MegolmEvent))
        events = [e for e in (room.timeline.events if room else []) if not isinstance(e, MegolmEvent)]
        for e in list(pending):
            clear = client.decrypt_event(e)
            if isinstance(clear, RoomMessageText):
                pending.remove(e)
                events.append(clear)
        if any(isinstance(e, RoomMessageText) and e.body == body and e.decrypted for e in events):
            check(True, what)
            return
    check(False, f"{what} (still undecryptable: {len(pending)})")


async def encrypted_dm(sandcat, sandcat_name, synapse, synapse_name):
    """A DM in an encrypted room between a user of each server; each decrypts the other."""
    with tempfile.TemporaryDirectory() as a_store, tempfile.TemporaryDirectory() as b_store:
        eve = await e2e_account(sandcat, sandcat_name, f"eve{RUN}", a_store)
        ezra = await e2e_account(synapse, synapse_name, f"ezra{RUN}", b_store)
        encryption = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        resp = await eve.room_create(is_direct=True, invite=[ezra.user_id], initial_state=[encryption])
        check(isinstance(resp, RoomCreateResponse), f"Eve makes an encrypted DM with Ezra ({resp})")
        dm = resp.room_id
        for _ in range(30):
            if dm in (await crypto_round(ezra)).rooms.invite:
                break
        resp = await ezra.join(dm)
        check(isinstance(resp, JoinResponse), f"Ezra joins the encrypted DM ({resp})")
        for _ in range(30):
            await crypto_round(eve)
            room = eve.rooms.get(dm)
            if room is not None and ezra.user_id in room.users and room.encrypted:
                break
        check(ezra.user_id in eve.rooms[dm].users, "Eve's server has Ezra joined")
        await crypto_round(ezra, timeout=0)

        for sender, receiver, label in ((eve, ezra, "Sandcat -> Synapse"), (ezra, eve, "Synapse -> Sandcat")):
            secret = f"secret {label} {RUN}"
            await crypto_round(sender, timeout=0)
            resp = await sender.room_send(
                dm, "m.room.message", {"msgtype": "m.text", "body": secret}, ignore_unverified_devices=True
            )
            check(isinstance(resp, RoomSendResponse), f"{sender.user_id} sends encrypted ({resp})")
            await decrypted(receiver, dm, secret, f"encrypted DM {label}: decrypted by {receiver.user_id}")
        for c in (eve, ezra):
            await c.close()


async def presence_across(a, b):
    """a sets its presence with a status; b's /sync shows it, through b's server."""
    status = f"in a meeting {RUN}"
    resp = await a.set_presence("unavailable", status)
    check(type(resp).__name__ == "PresenceSetResponse", f"{a.user_id} sets presence ({resp})")
    await sync_until(
        b,
        lambda r: any(
            e.user_id == a.user_id and e.presence == "unavailable" and e.status_msg == status
            for e in r.presence_events
        ),
        f"{b.user_id} sees {a.user_id}'s presence",
    )
    check(True, f"presence {a.user_id} -> {b.user_id}")


async def membership(client, room_id, user_id):
    resp = await client.room_get_state_event(room_id, "m.room.member", user_id)
    if not isinstance(resp, RoomGetStateEventResponse):
        return None
    return resp.content.get("membership")


def ephemeral_of(room_id, kind, pred):
    def found(resp):
        room = resp.rooms.join.get(room_id)
        return room is not None and any(isinstance(e, kind) and pred(e) for e in room.ephemeral)

    return found


async def typing_and_receipt(a, b, room_id):
    """A types and reads B's latest message; B sees both through /sync."""
    resp = await a.room_typing(room_id, typing_state=True, timeout=30000)
    check(type(resp).__name__ == "RoomTypingResponse", f"{a.user_id} types ({resp})")
    await sync_until(
        b,
        ephemeral_of(room_id, TypingNoticeEvent, lambda e: a.user_id in e.users),
        f"{b.user_id} sees {a.user_id} typing",
    )
    check(True, f"{a.user_id} typing seen by {b.user_id}")
    text = f"read me {b.user_id} {RUN}"
    sent = await b.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    check(isinstance(sent, RoomSendResponse), f"{b.user_id} sends")
    await sync_until(a, has_message(room_id, text), f"{a.user_id} gets the message to read")
    resp = await a.room_read_markers(room_id, fully_read_event=sent.event_id, read_event=sent.event_id)
    check(type(resp).__name__ == "RoomReadMarkersResponse", f"{a.user_id} reads ({resp})")
    await sync_until(
        b,
        ephemeral_of(
            room_id,
            ReceiptEvent,
            lambda e: any(
                r.event_id == sent.event_id and r.user_id == a.user_id for r in e.receipts
            ),
        ),
        f"{b.user_id} sees {a.user_id}'s receipt",
    )
    check(True, f"{a.user_id}'s read receipt seen by {b.user_id}")


async def talk(a, b, room_id, label):
    """A message each way, each seen through the other's /sync."""
    text = f"{label} from {a.user_id} {RUN}"
    resp = await a.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    check(isinstance(resp, RoomSendResponse), f"{a.user_id} sends in {label}")
    await sync_until(b, has_message(room_id, text), f"{b.user_id} sees {a.user_id} in {label}")
    check(True, f"{label}: {a.user_id} -> {b.user_id} seen through /sync")
    text = f"{label} from {b.user_id} {RUN}"
    resp = await b.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    check(isinstance(resp, RoomSendResponse), f"{b.user_id} sends in {label}")
    await sync_until(a, has_message(room_id, text), f"{a.user_id} sees {b.user_id} in {label}")
    check(True, f"{label}: {b.user_id} -> {a.user_id} seen through /sync")


async def eventually_member(client, room_id, user_id, want, what):
    for _ in range(30):
        if await membership(client, room_id, user_id) == want:
            break
        await asyncio.sleep(0.3)
    check(await membership(client, room_id, user_id) == want, what)


async def space_across(owner, owner_name, other):
    """`owner` makes a space holding a public room and a sub-space with a room of its own;
    `other`, of the other server, joins the space and walks it through its own server, which
    asks `owner`'s server for the rooms it is not in."""
    async def made(name, space=False):
        resp = await owner.room_create(name=name, visibility=RoomVisibility.public, space=space)
        check(isinstance(resp, RoomCreateResponse), f"{owner.user_id} makes {name} ({resp})")
        return resp.room_id

    async def child(parent, room_id):
        path = f"/_matrix/client/v3/rooms/{quote(parent)}/state/m.space.child/{quote(room_id)}"
        status, body = await api(owner, "PUT", path, {"via": [owner_name]})
        check(status == 200, f"{owner.user_id} puts a room in a space ({body})")

    hall, patio, wing, attic = (await made("Hall", True), await made("Patio"),
                                await made("Wing", True), await made("Attic"))
    await child(hall, patio)
    await child(hall, wing)
    await child(wing, attic)
    path = f"/_matrix/client/v1/room_summary/{quote(patio)}?via={quote(owner_name)}"
    status, body = await api(other, "GET", path, {})
    check(status == 200 and body.get("name") == "Patio",
          f"{other.user_id} reads the summary of a room of {owner.user_id}'s server ({body})")
    await join_via(other, hall, owner_name)
    status, body = await api(other, "GET", f"/_matrix/client/v1/rooms/{quote(hall)}/hierarchy", {})
    names = sorted(r.get("name") for r in body.get("rooms", [])) if status == 200 else body
    check(names == ["Attic", "Hall", "Patio", "Wing"],
          f"{other.user_id} walks {owner.user_id}'s space through its own server ({names})")


async def knocked(client, room_id):
    """The knock section of `client`'s /sync for `room_id` (read raw: nio keeps no knocks).
    Each attempt asks with another timeout: Synapse answers a request it has answered in the
    last minutes from a cache."""
    for attempt in range(30):
        path = f"/_matrix/client/v3/sync?timeout={attempt + 1}"
        status, body = await api(client, "GET", path, {})
        knocks = body.get("rooms", {}).get("knock", {}) if status == 200 else {}
        if room_id in knocks:
            return knocks[room_id]
        await asyncio.sleep(0.3)
    return None

async def knock_and_restricted(owner, owner_name, other):
    """`other`, of the other server, knocks on a room of `owner`'s and is let in; then joins
    a room restricted to that room's members, vouched for by `owner`'s server."""
    rule = lambda content: [{"type": "m.room.join_rules", "state_key": "", "content": content}]
    resp = await owner.room_create(name="Door", initial_state=rule({"join_rule": "knock"}))
    check(isinstance(resp, RoomCreateResponse), f"{owner.user_id} makes a room for knocking")
    door = resp.room_id
    path = f"/_matrix/client/v3/knock/{quote(door)}?via={quote(owner_name)}"
    status, body = await api(other, "POST", path, {"reason": "hello"})
    check(status == 200, f"{other.user_id} knocks on {owner.user_id}'s room ({body})")
    shown = await knocked(other, door)
    names = [e["content"].get("name") for e in (shown or {}).get("knock_state", {}).get("events", [])
             if e.get("type") == "m.room.name"]
    check(names == ["Door"], f"{other.user_id}'s /sync shows the knock with the room's name ({shown})")
    await eventually_member(owner, door, other.user_id, "knock", f"{owner.user_id} sees the knock")
    resp = await owner.room_invite(door, other.user_id)
    check(isinstance(resp, RoomInviteResponse), f"{owner.user_id} lets {other.user_id} in ({resp})")
    await sync_until(other, lambda r: door in r.rooms.invite, f"{other.user_id} is invited")
    resp = await other.join(door)
    check(isinstance(resp, JoinResponse), f"{other.user_id} joins after knocking ({resp})")

    allow = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": door}]}
    resp = await owner.room_create(name="Lounge", initial_state=rule(allow))
    check(isinstance(resp, RoomCreateResponse), f"{owner.user_id} makes a restricted room")
    lounge = resp.room_id
    await join_via(other, lounge, owner_name)
    await eventually_member(
        owner, lounge, other.user_id, "join", f"{owner.user_id}'s server has the restricted join"
    )
    await talk(owner, other, lounge, f"{owner.user_id}'s restricted room")


async def main():
    sam = await account(SANDCAT, SANDCAT_NAME, f"sam{RUN}")
    syd = await account(SYNAPSE, SYNAPSE_NAME, f"syd{RUN}")

    # Public rooms on Synapse: Sam joins one by alias, one by id (via Synapse); they talk.
    for how in ("alias", "id"):
        resp = await syd.room_create(
            visibility=RoomVisibility.public, alias=f"syn{how}{RUN}", name="On Synapse"
        )
        check(isinstance(resp, RoomCreateResponse), f"Synapse room ({resp})")
        room = resp.room_id
        if how == "alias":
            resp = await sam.join(f"#syn{how}{RUN}:{SYNAPSE_NAME}")
            check(isinstance(resp, JoinResponse), f"Sam joins Synapse's room by alias ({resp})")
            check(resp.room_id == room, "the alias names the room")
        else:
            await join_via(sam, room, SYNAPSE_NAME)
        await talk(syd, sam, room, f"Synapse's room joined by {how}")

    # Public rooms on Sandcat: Syd joins one by alias, one by id (via Sandcat); they talk.
    for how in ("alias", "id"):
        resp = await sam.room_create(
            visibility=RoomVisibility.public, alias=f"sand{how}{RUN}", name="On Sandcat"
        )
        check(isinstance(resp, RoomCreateResponse), f"Sandcat room ({resp})")
        room = resp.room_id
        if how == "alias":
            resp = await syd.join(f"#sand{how}{RUN}:{SANDCAT_NAME}")
            check(isinstance(resp, JoinResponse), f"Syd joins Sandcat's room by alias ({resp})")
            check(resp.room_id == room, "the alias names the room")
        else:
            await join_via(syd, room, SANDCAT_NAME)
        await talk(sam, syd, room, f"Sandcat's room joined by {how}")

    # Directories, both ways: each user finds the other server's public room through its own.
    for me, server, name in ((sam, SYNAPSE_NAME, "On Synapse"), (syd, SANDCAT_NAME, "On Sandcat")):
        path = f"/_matrix/client/v3/publicRooms?server={quote(server)}"
        status, body = await api(me, "POST", path, {"filter": {"generic_search_term": name}})
        names = [r.get("name") for r in body.get("chunk", [])] if status == 200 else body
        check(name in names, f"{me.user_id} finds {name!r} in {server}'s directory ({names})")

    # Invites both ways: Sam invites Syd to a private room, who joins; Syd invites Sam, who
    # declines.
    resp = await sam.room_create(name="Sandcat private")
    check(isinstance(resp, RoomCreateResponse), "Sandcat private room")
    private = resp.room_id
    resp = await sam.room_invite(private, syd.user_id)
    check(isinstance(resp, RoomInviteResponse), f"Sam invites Syd ({resp})")
    await sync_until(syd, lambda r: private in r.rooms.invite, "Syd sees Sam's invite")
    resp = await syd.join(private)
    check(isinstance(resp, JoinResponse), f"Syd accepts the invite ({resp})")
    await talk(sam, syd, private, "Sandcat's private room")

    resp = await syd.room_create(name="Synapse private")
    check(isinstance(resp, RoomCreateResponse), "Synapse private room")
    declined = resp.room_id
    resp = await syd.room_invite(declined, sam.user_id)
    check(isinstance(resp, RoomInviteResponse), f"Syd invites Sam ({resp})")
    await sync_until(sam, lambda r: declined in r.rooms.invite, "Sam sees Syd's invite")
    resp = await sam.room_leave(declined)
    check(isinstance(resp, RoomLeaveResponse), f"Sam rejects the invite ({resp})")
    for _ in range(30):
        if await membership(syd, declined, sam.user_id) == "leave":
            break
        await asyncio.sleep(0.3)
    check(await membership(syd, declined, sam.user_id) == "leave", "Synapse has Sam's rejection")

    # Spaces, both ways: each walks the other server's space.
    await space_across(sam, SANDCAT_NAME, syd)
    await space_across(syd, SYNAPSE_NAME, sam)

    # Knocks and restricted joins, both ways.
    await knock_and_restricted(sam, SANDCAT_NAME, syd)
    await knock_and_restricted(syd, SYNAPSE_NAME, sam)

    # Typing and receipts, both ways, in the room Syd joined on Sandcat by invite.
    await typing_and_receipt(sam, syd, private)
    await typing_and_receipt(syd, sam, private)

    # Presence, both ways.
    await presence_across(sam, syd)
    await presence_across(syd, sam)

    # Profiles: each server asks the other for its user's display name.
    for me, other, name in ((sam, syd, "Syd of Synapse"), (syd, sam, "Sam of Sandcat")):
        resp = await other.set_displayname(name)
        check(type(resp).__name__ == "ProfileSetDisplayNameResponse", f"{other.user_id} names self")
        resp = await me.get_displayname(other.user_id)
        check(
            isinstance(resp, ProfileGetDisplayNameResponse) and resp.displayname == name,
            f"{me.user_id} reads {other.user_id}'s display name over federation ({resp})",
        )

    # End-to-end encryption plumbing, both ways: keys read and claimed, to-device messages.
    await keys_across(sam, syd)
    await keys_across(syd, sam)

    # Media, both ways: downloads and thumbnails of the other server's picture.
    await media_across(sam, syd)
    await media_across(syd, sam)

    # An encrypted DM, decrypted both ways.
    await encrypted_dm(SANDCAT, SANDCAT_NAME, SYNAPSE, SYNAPSE_NAME)

    # A Sandcat native client in a group with the Synapse user.
    await sandcat_group_with(sam, syd)

    for c in (sam, syd):
        await c.close()
    print(f"synapse federation interop: {checks} checks passed")


asyncio.run(main())
