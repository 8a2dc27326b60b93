#!/usr/bin/env node
// Evaluate a Realtime Database security-rules file with targaryen (an offline
// evaluator of RTDB rules) and check the "private per-user mailbox" contract:
//
//   * the owner uid can read <root>/<uid> and <root>/<uid>/<item>;
//   * another uid, and an unauthenticated client, are denied those reads;
//   * nobody (owner, other, unauthenticated) can read the listing <root> or /;
//   * nobody can write (set, update, delete) anywhere under <root>, nor at /.
//
// Usage: node rules-test.js --rules path/to/database.rules.json [--root moat/mailbox]
//                           [--uid OWNER_UID] [--other-uid OTHER_UID]
//
// Prints exactly one JSON line on stdout:
//   {"ok":bool,"rules":"...","root":"...","passed":N,"failed":N,
//    "checks":[{"name":"...","op":"read|write|update","path":"/...","as":"owner|other|unauthenticated",
//               "expect":"allow|deny","got":"allow|deny|error","pass":bool}, ...]}
// or, when the rules cannot be loaded/parsed: {"ok":false,"error":"..."}.
// Exit status: 0 only if every expectation holds, 1 otherwise (including errors).
'use strict';

const fs = require('fs');
const path = require('path');
const targaryen = require('targaryen');

function parseArgs(argv) {
  const out = { root: 'moat/mailbox', uid: 'uid-owner', otherUid: 'uid-other' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--rules') out.rules = next();
    else if (a === '--root') out.root = next();
    else if (a === '--uid') out.uid = next();
    else if (a === '--other-uid') out.otherUid = next();
    else if (a === '-h' || a === '--help') {
      process.stderr.write('usage: rules-test.js --rules FILE [--root moat/mailbox] [--uid U] [--other-uid V]\n');
      process.exit(1);
    } else throw new Error(`unknown argument: ${a}`);
  }
  if (!out.rules) throw new Error('--rules is required');
  out.root = out.root.replace(/^\/+|\/+$/g, '');
  if (!out.root) throw new Error('--root must not be empty');
  return out;
}

function loadRules(file) {
  const text = fs.readFileSync(path.resolve(file), 'utf8');
  // Firebase rules files may contain comments and multi-line strings;
  // firebase-json (a targaryen dependency) understands them. Fall back to JSON.
  let rules;
  try {
    rules = require('firebase-json').parse(text);
  } catch (e) {
    rules = JSON.parse(text);
  }
  if (!rules || typeof rules !== 'object' || !('rules' in rules)) {
    throw new Error('rules file must be an object with a top-level "rules" key');
  }
  return rules;
}

// Build {a:{b:{c: value}}} for path "a/b/c".
function nest(p, value) {
  return p.split('/').reduceRight((acc, key) => ({ [key]: acc }), value);
}

function authFor(uid) {
  // Shape of the `auth` variable for a Firebase Auth (anonymous) user.
  return {
    uid,
    provider: 'anonymous',
    token: {
      sub: uid,
      user_id: uid,
      iss: 'https://securetoken.google.com/demo-moat',
      aud: 'demo-moat',
      firebase: { identities: {}, sign_in_provider: 'anonymous' },
    },
  };
}

function main() {
  let args;
  let rules;
  try {
    args = parseArgs(process.argv.slice(2));
    rules = loadRules(args.rules);
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.message || e) }) + '\n');
    process.exit(1);
  }

  const { root, uid, otherUid } = args;
  const item = 'item-1';
  const otherItem = 'item-2';
  const message = { from: 'server', body: 'hello', ts: 1700000000000 };
  const data = nest(root, {
    [uid]: { [item]: message },
    [otherUid]: { [otherItem]: message },
  });

  let base;
  try {
    base = targaryen.database(rules, data);
  } catch (e) {
    process.stdout.write(JSON.stringify({ ok: false, rules: args.rules, root, error: `invalid rules: ${e.message}` }) + '\n');
    process.exit(1);
  }

  // Note: Database#as(null) keeps the previous auth (it treats null as "unchanged"),
  // so always derive each actor from the unauthenticated base database.
  const actors = {
    owner: base.as(authFor(uid)),
    other: base.as(authFor(otherUid)),
    unauthenticated: base,
  };

  const checks = [];
  function check(name, actor, op, p, expect, value) {
    let got;
    let info;
    try {
      const db = actors[actor];
      let r;
      if (op === 'read') r = db.read(p);
      else if (op === 'write') r = db.write(p, value);
      else if (op === 'update') r = db.update(p, value);
      else throw new Error(`bad op ${op}`);
      got = r.allowed ? 'allow' : 'deny';
      if ((got === 'allow') !== (expect === 'allow')) info = r.info;
    } catch (e) {
      got = 'error';
      info = e.message;
    }
    const entry = { name, op, path: p, as: actor, expect, got, pass: got === expect };
    if (info) entry[got === 'error' ? 'error' : 'detail'] = info;
    checks.push(entry);
  }

  const R = `/${root}`;
  const own = `${R}/${uid}`;
  const ownItem = `${own}/${item}`;
  const theirs = `${R}/${otherUid}`;

  // Reads that must be allowed.
  check('owner_read_own_mailbox', 'owner', 'read', own, 'allow');
  check('owner_read_own_item', 'owner', 'read', ownItem, 'allow');

  // Reads that must be denied.
  check('other_read_owner_mailbox', 'other', 'read', own, 'deny');
  check('other_read_owner_item', 'other', 'read', ownItem, 'deny');
  check('owner_read_other_mailbox', 'owner', 'read', theirs, 'deny');
  check('unauth_read_owner_mailbox', 'unauthenticated', 'read', own, 'deny');
  check('unauth_read_owner_item', 'unauthenticated', 'read', ownItem, 'deny');
  for (const actor of ['owner', 'other', 'unauthenticated']) {
    const a = actor === 'unauthenticated' ? 'unauth' : actor;
    check(`${a}_read_root_listing`, actor, 'read', R, 'deny');
    check(`${a}_read_db_root`, actor, 'read', '/', 'deny');
  }

  // Writes: nobody may write anywhere under the root, nor at /.
  for (const actor of ['owner', 'other', 'unauthenticated']) {
    const a = actor === 'unauthenticated' ? 'unauth' : actor;
    check(`${a}_write_owner_item`, actor, 'write', ownItem, 'deny', { from: actor, body: 'x' });
    check(`${a}_write_owner_new_item`, actor, 'write', `${own}/new-item`, 'deny', { from: actor, body: 'x' });
    check(`${a}_delete_owner_item`, actor, 'write', ownItem, 'deny', null);
    check(`${a}_write_owner_mailbox`, actor, 'write', own, 'deny', { x: { body: 'x' } });
    check(`${a}_update_owner_mailbox`, actor, 'update', own, 'deny', { 'new-item': { body: 'x' } });
    check(`${a}_write_root_listing`, actor, 'write', R, 'deny', { someone: { x: 1 } });
    check(`${a}_write_db_root`, actor, 'write', '/', 'deny', { x: 1 });
    check(`${a}_update_db_root`, actor, 'update', '/', 'deny', { [`${root}/${uid}/${item}`]: { body: 'x' } });
  }

  const failed = checks.filter((c) => !c.pass).length;
  const out = {
    ok: failed === 0,
    rules: args.rules,
    root,
    passed: checks.length - failed,
    failed,
    checks,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(failed === 0 ? 0 : 1);
}

main();
