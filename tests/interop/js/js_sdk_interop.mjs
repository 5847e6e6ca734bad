// Interop test: matrix-js-sdk, the SDK Element Web is built on, drives a running sandcat.
// Registers two users, creates a room, invites, joins through the sync loop, exchanges
// messages both ways with the client's live timeline, checks the read receipt and typing
// notification Element would show, then searches, lists threads and walks a space, and
// checks the unread and highlight counts of its room list, the notification panel's list
// and a pusher. Usage: node js_sdk_interop.mjs http://127.0.0.1:PORT
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { check, done } from "./checks.mjs";

logger.setLevel("warn");
const hs = process.argv[2] ?? "http://127.0.0.1:8008";
const run = Math.random().toString(36).slice(2, 8);

async function account(name) {
  const anon = sdk.createClient({ baseUrl: hs });
  let session;
  try {
    await anon.registerRequest({ username: name, password: "pw-" + name });
  } catch (e) {
    session = e.data?.session;
    check(e.httpStatus === 401 && e.data?.flows?.[0]?.stages?.[0] === "m.login.dummy", `UIA flows for ${name}`);
  }
  const reg = await anon.registerRequest({ username: name, password: "pw-" + name, auth: { type: "m.login.dummy", session } });
  check(reg.user_id === `@${name}:localhost`, `register ${name}`);
  const login = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: name }, password: "pw-" + name });
  check(!!login.access_token, `login ${name}`);
  return sdk.createClient({ baseUrl: hs, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });
}

function waitFor(client, event, pred, what, ms = 15000) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => check(false, what), ms);
    const handler = (...args) => {
      const hit = pred(...args);
      if (hit) {
        clearTimeout(timer);
        client.removeListener(event, handler);
        check(true, what);
        resolve(hit);
      }
    };
    client.on(event, handler);
  });
}

async function until(cond, what, ms = 15000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) check(false, what);
    await new Promise((r) => setTimeout(r, 100));
  }
  check(true, what);
}

function started(client) {
  return new Promise((resolve) => {
    client.once(sdk.ClientEvent.Sync, (state) => resolve(state));
    client.startClient({ initialSyncLimit: 10 });
  });
}

const alice = await account(`alice${run}`);
const bob = await account(`bob${run}`);
check((await started(alice)) === "PREPARED", "alice's client syncs");
check((await started(bob)) === "PREPARED", "bob's client syncs");

const invited = waitFor(bob, sdk.RoomEvent.MyMembership, (room, membership) => membership === "invite" && room, "bob sees the invite");
const { room_id: roomId } = await alice.createRoom({ name: "js room", invite: [bob.getUserId()] });
check(roomId.startsWith("!"), "alice creates a room");
await invited;
await bob.joinRoom(roomId);
await waitFor(alice, sdk.RoomStateEvent.Members, (ev, state, member) => member.userId === bob.getUserId() && member.membership === "join" && member, "alice sees bob join");

const atBob = waitFor(bob, sdk.RoomEvent.Timeline, (ev, room) => room?.roomId === roomId && ev.getType() === "m.room.message" && ev.getContent().body === "hello from js" && ev, "bob's timeline shows alice's message");
const sent = await alice.sendTextMessage(roomId, "hello from js");
check(sent.event_id.startsWith("$"), "alice sends");
const ev = await atBob;
check(ev.getSender() === alice.getUserId(), "sender is alice");

const atAlice = waitFor(alice, sdk.RoomEvent.Timeline, (e, room) => room?.roomId === roomId && e.getContent().body === "hi from bob" && e, "alice's timeline shows bob's reply");
await bob.sendTextMessage(roomId, "hi from bob");
await atAlice;

const typing = waitFor(alice, sdk.RoomMemberEvent.Typing, (e, member) => member.userId === bob.getUserId() && member.typing && member, "alice sees bob typing");
await bob.sendTyping(roomId, true, 10000);
await typing;

const receipt = waitFor(alice, sdk.RoomEvent.Receipt, (e, room) => room.roomId === roomId && e.getContent()[ev.getId()]?.["m.read"]?.[bob.getUserId()] && room, "alice sees bob's read receipt");
await bob.sendReadReceipt(ev);
await receipt;

const room = alice.getRoom(roomId);
check(room.name === "js room", "room name from state");
check(room.getJoinedMemberCount() === 2, "two joined members");

// Search, as Element's search box asks it: the message is found by one of its words.
const found = await alice.searchRoomEvents({ term: "hello" });
check(found.count >= 1 && found.highlights.includes("hello"), "search counts and highlights");
check(found.results.some((r) => r.context.getEvent().getContent().body === "hello from js"), "search finds alice's message, with its context");

// Threads: a reply in a thread makes its root a thread the threads panel lists.
await bob.sendMessage(roomId, sent.event_id, { msgtype: "m.text", body: "in the thread" });
const threads = await alice.createThreadListMessagesRequest(roomId, null, 20, sdk.Direction.Backward, sdk.ThreadFilterType.All);
check(threads.chunk.some((e) => e.event_id === sent.event_id), "the threads list holds the thread's root");

// Spaces: a space with the room as its child, walked as Element's space home walks it.
const { room_id: spaceId } = await alice.createRoom({
  name: "js space",
  creation_content: { type: "m.space" },
  initial_state: [{ type: "m.space.child", state_key: roomId, content: { via: ["localhost"] } }],
});
const hierarchy = await alice.getRoomHierarchy(spaceId, 10, 1);
check(hierarchy.rooms[0]?.room_id === spaceId && hierarchy.rooms[0]?.room_type === "m.space", "the hierarchy starts at the space");
check(hierarchy.rooms.some((r) => r.room_id === roomId && r.name === "js room"), "the hierarchy holds the space's room");

// Push: a mention of alice raises her room's highlight count as Element's room list shows
// it, the notification panel lists it, and her read receipt clears the counts.
const mentionAtAlice = waitFor(alice, sdk.RoomEvent.Timeline, (e, r) => r?.roomId === roomId && e.getContent().body === "alice, look" && e, "the mention reaches alice");
const mentioned = await bob.sendMessage(roomId, {
  msgtype: "m.text",
  body: "alice, look",
  "m.mentions": { user_ids: [alice.getUserId()] },
});
await until(() => room.getUnreadNotificationCount(sdk.NotificationCountType.Highlight) === 1, "the mention highlights alice's room");
check(room.getUnreadNotificationCount(sdk.NotificationCountType.Total) >= 1, "alice's room counts unread notifications");
const notifs = await alice.http.authedRequest(sdk.Method.Get, "/notifications", { only: "highlight" });
check(notifs.notifications[0]?.event?.event_id === mentioned.event_id && notifs.notifications[0].read === false, "the notification panel lists the mention, unread");
await alice.sendReadReceipt(await mentionAtAlice);
await until(() => room.getUnreadNotificationCount(sdk.NotificationCountType.Total) === 0, "alice's read receipt clears her counts");
await alice.setPusher({
  kind: "http", app_id: "org.example.js", pushkey: "js-key", app_display_name: "js", device_display_name: "js",
  lang: "en", data: { url: "https://push.example.org/_matrix/push/v1/notify", format: "event_id_only" },
});
const { pushers } = await alice.getPushers();
check(pushers.length === 1 && pushers[0].pushkey === "js-key" && pushers[0].data.format === "event_id_only", "a pusher is set and listed");

alice.stopClient();
bob.stopClient();
done();
