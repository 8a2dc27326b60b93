#!/usr/bin/env node
// A real Firebase client: the Firebase JS SDK (firebase/app + firebase/auth)
// signs in anonymously against the Auth emulator and prints one JSON line:
//   {"uid":"...","idToken":"...","refreshToken":"...","providerId":"firebase","isAnonymous":true}
//
// Usage: node sign-in.mjs --port N [--project demo-moat]
// Exit 0 on success; on failure a message on stderr and exit 1.
import { initializeApp } from 'firebase/app';
import { getAuth, connectAuthEmulator, signInAnonymously } from 'firebase/auth';

function fail(msg) {
  process.stderr.write(`sign-in: ${msg}\n`);
  process.exit(1);
}

const argv = process.argv.slice(2);
const args = { project: 'demo-moat' };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (i + 1 >= argv.length) fail(`missing value for ${a}`);
  if (a === '--port') args.port = Number(argv[++i]);
  else if (a === '--project') args.project = argv[++i];
  else fail(`unknown argument: ${a}`);
}
if (!Number.isInteger(args.port) || args.port <= 0) fail('--port N is required');

// Never hang a test: the SDK retries network errors for a long time.
setTimeout(() => fail('timed out after 20 s'), 20000).unref();

try {
  const app = initializeApp({
    apiKey: 'demo-key',
    projectId: args.project,
    authDomain: `${args.project}.firebaseapp.com`,
  });
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://127.0.0.1:${args.port}`, { disableWarnings: true });
  const cred = await signInAnonymously(auth);
  const idToken = await cred.user.getIdToken();
  process.stdout.write(JSON.stringify({
    uid: cred.user.uid,
    idToken,
    refreshToken: cred.user.refreshToken,
    providerId: cred.user.providerId,
    isAnonymous: cred.user.isAnonymous,
  }) + '\n');
  process.exit(0);
} catch (e) {
  fail(`${e && e.code ? e.code + ': ' : ''}${e && e.message || e}`);
}
