#!/usr/bin/env node
// Launch the Firebase Auth emulator (firebase-tools, from this package's own
// node_modules) on a given port, for Moat's Rust integration tests.
//
// Usage: node start-emulator.js --port N [--project demo-moat] [--dir DIR] [--timeout SECS]
//
// Protocol:
//   * stdout carries exactly one line, `READY <port>`, printed once the emulator
//     answers http://127.0.0.1:<port>/emulator/v1/projects/<project>/config.
//     Everything firebase-tools prints goes to stderr.
//   * SIGTERM / SIGINT / SIGHUP: the emulator's whole process group gets SIGTERM
//     (a clean shutdown, ~0.1 s); SIGKILL after 10 s if it is still there. Exit 0.
//   * If this launcher's parent dies, it shuts the emulator down the same way.
//     If this launcher itself is SIGKILLed (e.g. Rust's Child::kill), a guard
//     preloaded into the emulator process notices (its parent changes) and the
//     emulator stops itself within ~0.5 s.
//   * Exit 1 (with a message on stderr) if the port is already taken, the
//     emulator exits early, or it is not ready within --timeout (default 60 s).
//
// firebase.json is written to --dir (default: a fresh temp dir, removed on exit):
//   {"emulators":{"auth":{"host":"127.0.0.1","port":N},"hub":{"host":"127.0.0.1"},
//    "ui":{"enabled":false},"singleProjectMode":true}}
// The UI must stay disabled: otherwise firebase-tools tries to download it.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');

const HOST = '127.0.0.1';

function die(msg) {
  process.stderr.write(`start-emulator: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const out = { project: 'demo-moat', timeout: 60 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) die(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--port') out.port = Number(next());
    else if (a === '--project') out.project = next();
    else if (a === '--dir') out.dir = next();
    else if (a === '--timeout') out.timeout = Number(next());
    else if (a === '-h' || a === '--help') {
      process.stderr.write('usage: start-emulator.js --port N [--project demo-moat] [--dir DIR] [--timeout SECS]\n');
      process.exit(1);
    } else die(`unknown argument: ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port <= 0 || out.port > 65535) die('--port N (1..65535) is required');
  // A "demo-" project keeps firebase-tools from contacting any Google service.
  if (!/^demo-[a-z0-9-]+$/.test(out.project)) die('--project must be a demo-* project id (offline mode)');
  if (!(out.timeout > 0)) die('--timeout must be > 0');
  return out;
}

function portInUse(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function probe(port, project) {
  return new Promise((resolve) => {
    const req = http.get(
      { host: HOST, port, path: `/emulator/v1/projects/${project}/config`, timeout: 1000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { body += c; });
        res.on('end', () => resolve(res.statusCode === 200 && /signIn/.test(body)));
      },
    );
    req.on('timeout', () => { req.destroy(); resolve(false); });
    req.on('error', () => resolve(false));
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const firebaseBin = path.join(__dirname, 'node_modules', '.bin', 'firebase');
  if (!fs.existsSync(firebaseBin)) die(`${firebaseBin} not found: run tests/firebase/setup.sh first`);

  if (await portInUse(args.port)) die(`port ${args.port} on ${HOST} is already in use`);

  let dir = args.dir;
  let ownDir = false;
  if (!dir) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-auth-emu-'));
    ownDir = true;
  }
  dir = path.resolve(dir);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, '.tmp');
  const cfgHome = path.join(dir, '.config');
  fs.mkdirSync(tmp, { recursive: true });
  fs.mkdirSync(cfgHome, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'firebase.json'),
    JSON.stringify({
      emulators: {
        auth: { host: HOST, port: args.port },
        // The hub always starts; without a port it picks a free one (4400 upwards).
        hub: { host: HOST },
        ui: { enabled: false },
        singleProjectMode: true,
      },
    }, null, 2) + '\n',
  );

  const env = {
    ...process.env,
    CI: 'true', // no MOTD fetch (firebase-public.firebaseio.com/cli.json), no update check
    NO_UPDATE_NOTIFIER: '1', // no registry query for a newer firebase-tools
    TMPDIR: tmp, // the hub's locator file (hub-<project>.json) goes to os.tmpdir(): keep it private
    XDG_CONFIG_HOME: cfgHome, // private configstore: no stored login, no usage-tracking consent
    FIREBASE_CLI_EXPERIMENTS: '',
  };
  if (ownDir) env.MOAT_EMULATOR_OWN_DIR = dir;
  else delete env.MOAT_EMULATOR_OWN_DIR;
  delete env.FIREBASE_TOKEN;
  delete env.GOOGLE_APPLICATION_CREDENTIALS;
  delete env.FIREBASE_AUTH_EMULATOR_HOST;

  const child = spawn(
    process.execPath,
    ['-r', path.join(__dirname, 'lib', 'parent-guard.js'), firebaseBin,
      'emulators:start', '--only', 'auth', '--project', args.project],
    { cwd: dir, env, stdio: ['ignore', 2, 2], detached: true },
  );

  let ready = false;
  let stopping = false;
  let exited = false;
  let stopExitCode = 0;

  function cleanupDir() {
    if (ownDir) {
      try { fs.rmSync(dir, { recursive: true, force: true }); } catch (_) { /* ignore */ }
    }
  }

  function killGroup(sig) {
    try { process.kill(-child.pid, sig); } catch (_) { /* already gone */ }
  }

  function stop(reason) {
    if (stopping) { killGroup('SIGKILL'); return; }
    stopping = true;
    process.stderr.write(`start-emulator: ${reason}: stopping emulator (pid ${child.pid})\n`);
    killGroup('SIGTERM');
    setTimeout(() => {
      process.stderr.write('start-emulator: emulator still running after 10 s, SIGKILL\n');
      killGroup('SIGKILL');
    }, 10000).unref();
  }

  child.on('exit', (code, signal) => {
    exited = true;
    // Whatever is left in the group (there should be nothing) goes too.
    killGroup('SIGKILL');
    cleanupDir();
    if (stopping) process.exit(stopExitCode);
    process.stderr.write(`start-emulator: emulator exited unexpectedly (code ${code}, signal ${signal})\n`);
    process.exit(1);
  });
  child.on('error', (e) => die(`spawn failed: ${e.message}`));

  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => stop(sig));
  process.on('exit', () => { if (!exited) killGroup('SIGKILL'); });

  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop('parent process died');
  }, 500).unref();

  const deadline = Date.now() + args.timeout * 1000;
  while (!ready && !stopping && !exited) {
    if (await probe(args.port, args.project)) {
      ready = true;
      break;
    }
    if (Date.now() > deadline) {
      stopExitCode = 1;
      stop(`not ready after ${args.timeout} s`);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  if (ready && !stopping && !exited) process.stdout.write(`READY ${args.port}\n`);
}

main().catch((e) => die(e && e.stack || String(e)));
