// Interop test: matrix-js-sdk (the SDK under Element Web) drives what Element's settings and
// login pages call: an email address added after following the mailed link, listed, used to
// sign in, a forgotten password reset through the mailed link, the address removed; and a
// link preview of a page with its image. The server mails through a small SMTP receiver
// here, and previews a page served here.
// Usage: node js_sdk_accounts.mjs http://127.0.0.1:PORT SMTP_PORT
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { check, done } from "./checks.mjs";
import net from "node:net";
import http from "node:http";

logger.setLevel("warn");
const hs = process.argv[2] ?? "http://127.0.0.1:8008";
const smtpPort = Number(process.argv[3]);
const run = Math.random().toString(36).slice(2, 8);

// An SMTP receiver: keeps each message's text (quoted-printable soft breaks joined).
const inbox = [];
const smtp = net.createServer((sock) => {
  sock.setEncoding("utf8");
  let inData = false;
  let buf = "";
  let msg = "";
  sock.write("220 mail.test ESMTP\r\n");
  sock.on("data", (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\r\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (inData) {
        if (line === ".") {
          inData = false;
          inbox.push(msg.replace(/=\n/g, "").replace(/=3D/g, "="));
          msg = "";
          sock.write("250 OK\r\n");
        } else {
          msg += (line.startsWith("..") ? line.slice(1) : line) + "\n";
        }
        continue;
      }
      const cmd = line.slice(0, 4).toUpperCase();
      if (cmd === "EHLO" || cmd === "HELO") sock.write("250 mail.test\r\n");
      else if (cmd === "DATA") {
        inData = true;
        sock.write("354 go ahead\r\n");
      } else if (cmd === "QUIT") {
        sock.write("221 bye\r\n");
        sock.end();
      } else sock.write("250 OK\r\n");
    }
  });
});
await new Promise((resolve) => smtp.listen(smtpPort, "127.0.0.1", resolve));

async function mailTo(address, n, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const mails = inbox.filter((m) => m.toLowerCase().includes(`to: ${address}`));
    if (mails.length >= n) return mails[n - 1];
    if (Date.now() > end) check(false, `mail ${n} to ${address}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const link = (mail) => mail.match(/https?:\/\/\S+/)[0];

const name = `alice${run}`;
const email = `${name}@example.org`;
const anon = sdk.createClient({ baseUrl: hs });
await anon.registerRequest({ username: name, password: "pw-1", auth: { type: "m.login.dummy" } });
const login = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: name }, password: "pw-1" });
const alice = sdk.createClient({ baseUrl: hs, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id });

const caps = await alice.getCapabilities();
check(caps["m.3pid_changes"]?.enabled === true, "the server lets users change their addresses");

// Settings → Email addresses: Element asks for a token, the user follows the link, Element
// adds the address (the user's password confirms).
const added = await alice.requestAdd3pidEmailToken(email, `secret-${run}`, 1);
check(typeof added.sid === "string", "a token is mailed for the address");
const mail = await mailTo(email, 1);
check((await fetch(link(mail))).status === 200, "the mailed link validates the address");
const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: alice.getUserId() }, password: "pw-1" };
await alice.addThreePidOnly({ sid: added.sid, client_secret: `secret-${run}`, auth });
const { threepids } = await alice.getThreePids();
check(threepids.some((t) => t.medium === "email" && t.address === email), "the address is listed");

// Forgot password: a token to the address, the link followed, the new password set
// without an access token; the address signs in.
const reset = await anon.requestPasswordEmailToken(email, `reset-${run}`, 1);
const resetMail = await mailTo(email, 2);
check((await fetch(link(resetMail))).status === 200, "the reset link validates");
await anon.setPassword({ type: "m.login.email.identity", threepid_creds: { sid: reset.sid, client_secret: `reset-${run}` } }, "pw-2", true);
check(true, "the password is reset by email");
const byEmail = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.thirdparty", medium: "email", address: email }, password: "pw-2" });
check(byEmail.user_id === alice.getUserId(), "the address and the new password sign in");
const alice2 = sdk.createClient({ baseUrl: hs, accessToken: byEmail.access_token, userId: byEmail.user_id, deviceId: byEmail.device_id });
const removed = await alice2.deleteThreePid("email", email);
check(removed.id_server_unbind_result === "success", "the address is removed");
check((await alice2.getThreePids()).threepids.length === 0, "no address is left");

// A link preview, as Element shows under a message with a link.
const png = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg==",
  "base64",
);
const site = http.createServer((req, res) => {
  if (req.url === "/img.png") {
    res.writeHead(200, { "content-type": "image/png" });
    res.end(png);
  } else {
    res.writeHead(200, { "content-type": "text/html" });
    res.end('<html><head><meta property="og:title" content="Sandcat from js"><meta property="og:image" content="/img.png"></head></html>');
  }
});
await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
const preview = await alice2.getUrlPreview(`http://127.0.0.1:${site.address().port}/page`, Date.now());
check(preview["og:title"] === "Sandcat from js", "the preview has the page's title");
check(String(preview["og:image"]).startsWith("mxc://") && preview["og:image:width"] === 2, "the preview's image is kept as media");

site.close();
smtp.close();
done();
