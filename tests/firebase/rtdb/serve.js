#!/usr/bin/env node
// A stand-in for the Firebase Realtime Database REST API: firebase-server
// (in REST mode, backed by an in-memory firebase@8 database), for Moat's Rust
// integration tests. The real RTDB emulator cannot be used here (it is a jar
// that firebase-tools downloads from Google).
//
// Usage: node serve.js --port N [--data seed.json]
//
// Protocol:
//   * stdout carries exactly one line, `READY <port>`, once 127.0.0.1:<port>
//     is listening. Logs go to stderr.
//   * SIGTERM / SIGINT / SIGHUP: close and exit 0. If this process's parent
//     dies it exits too.
//   * Exit 1 (message on stderr) if the port is taken or the seed is invalid.
//
// What this serves over REST (details in ../README.md):
//   GET/PUT/PATCH/DELETE /<path>.json with JSON bodies, 200 + JSON answers
//   (GET of a missing path: 200 `null`; DELETE: 200 `null`), GET ?shallow=true,
//   400 for a non-JSON body or an invalid path; POST (push) answers 400.
//   It ignores every other query parameter (auth=, access_token=, ns=, print=,
//   orderBy/limitTo*/startAt...) and the Authorization header, and it applies
//   no security rules over REST: every request is allowed.
'use strict';

const fs = require('fs');
const path = require('path');

const HOST = '127.0.0.1';

function die(msg) {
  process.stderr.write(`serve: ${msg}\n`);
  process.exit(1);
}

const argv = process.argv.slice(2);
const args = {};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (i + 1 >= argv.length) die(`missing value for ${a}`);
  if (a === '--port') args.port = Number(argv[++i]);
  else if (a === '--data') args.data = argv[++i];
  else die(`unknown argument: ${a}`);
}
if (!Number.isInteger(args.port) || args.port <= 0 || args.port > 65535) die('--port N (1..65535) is required');

let data = null;
if (args.data) {
  try {
    data = JSON.parse(fs.readFileSync(path.resolve(args.data), 'utf8'));
  } catch (e) {
    die(`cannot read seed data ${args.data}: ${e.message}`);
  }
}

const FirebaseServer = require('firebase-server');

let server;
try {
  server = new FirebaseServer({ port: args.port, address: HOST, rest: true }, 'moat-rtdb-test', data);
} catch (e) {
  die(`cannot start firebase-server: ${e.message}`);
}

const http = server.https; // the REST http.Server (the websocket protocol shares it)
const listenFailed = (e) => die(`listen on ${HOST}:${args.port} failed: ${e.code || e.message}`);
http.on('error', listenFailed);
// ws re-emits the http server's errors on itself; without a listener it throws.
server.wss.on('error', listenFailed);

// A thin filter in front of firebase-server's REST handler, to behave like the
// real RTDB where firebase-server would misbehave:
//   * PUT/PATCH with a body that is not JSON: 400 {"error":"Invalid data; ..."}
//     (firebase-server would throw an uncaught exception and never answer);
//   * GET ...json?shallow=true: children replaced by `true` (firebase-server
//     ignores `shallow` and returns the whole subtree);
//   * an invalid path (".", "#", "$", "[", "]" in a key): 400 {"error":"Invalid path..."}.
// Everything else goes to firebase-server unchanged.
const { Readable } = require('stream');
const originalHandlers = http.listeners('request');
http.removeAllListeners('request');

function send(res, status, payload) {
  const body = JSON.stringify(payload);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function dispatch(req, res) {
  try {
    for (const h of originalHandlers) h.call(http, req, res);
  } catch (e) {
    send(res, 400, { error: `Invalid path: ${e.message}` });
  }
}

http.on('request', (req, res) => {
  const u = new URL(req.url, `http://${HOST}`);
  // Paths are not percent-decoded (firebase-server stores "a%20b" literally):
  // keep keys to [A-Za-z0-9_-], as Firebase uids are.
  const pathname = u.pathname;
  if (pathname.endsWith('.json') && /[.#$[\]]/.test(pathname.slice(0, -'.json'.length))) {
    send(res, 400, { error: 'Invalid path: Invalid token in path' });
    return;
  }

  if (req.method === 'GET' && pathname.endsWith('.json') && u.searchParams.get('shallow') === 'true') {
    const ref = server.app.database().ref(pathname.slice(0, -'.json'.length));
    ref.once('value').then((snap) => {
      const v = snap.val();
      if (v !== null && typeof v === 'object') {
        const out = {};
        for (const k of Object.keys(v)) out[k] = true;
        send(res, 200, out);
      } else {
        send(res, 200, v);
      }
    }, (e) => send(res, 400, { error: String(e && e.message || e) }));
    return;
  }

  if ((req.method === 'PUT' || req.method === 'PATCH') && pathname.endsWith('.json')) {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 16 * 1024 * 1024) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        JSON.parse(body);
      } catch (e) {
        send(res, 400, { error: "Invalid data; couldn't parse JSON object, array, or value." });
        return;
      }
      // Hand firebase-server a request object that replays the body.
      const replay = Readable.from([body]);
      replay.method = req.method;
      replay.url = req.url;
      replay.headers = req.headers;
      replay.connection = req.socket;
      replay.socket = req.socket;
      dispatch(replay, res);
    });
    return;
  }

  dispatch(req, res);
});

// Last resort: log instead of dying (that request then gets no answer).
process.on('uncaughtException', (e) => {
  process.stderr.write(`serve: uncaught exception (request dropped): ${e && e.stack || e}\n`);
});

let stopping = false;
function stop(reason) {
  if (stopping) process.exit(0);
  stopping = true;
  process.stderr.write(`serve: ${reason}: closing\n`);
  // Close open keep-alive sockets too, else close() waits for them.
  if (typeof http.closeAllConnections === 'function') http.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
  server.close(() => process.exit(0));
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => stop(sig));

const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop('parent process died');
}, 500).unref();

function ready() {
  process.stdout.write(`READY ${args.port}\n`);
}
if (http.listening) ready();
else http.once('listening', ready);
