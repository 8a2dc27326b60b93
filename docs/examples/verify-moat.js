// A backend behind Moat's gateway that accepts only requests Moat signed (sign_upstream = true).
// Node 18+, no dependencies.
//   MOAT_JWKS_URL=https://moat.example/.well-known/moat-gateway-jwks.json PORT=3000 node verify-moat.js
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');

async function gatewayKey(jwksUrl) {
  const jwks = await (await fetch(jwksUrl)).json();
  const jwk = jwks.keys.find(k => k.kid === 'moat-gateway');
  return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
}

// True if Moat signed this request, recently, over this body.
function verifyMoat(key, req, rawBody) {
  const input = req.headers['signature-input'];
  const signature = req.headers['signature'];
  if (!input || !signature || !input.startsWith('moat=(')) return false;
  const params = input.slice('moat='.length);
  if (!/;keyid="moat-gateway"/.test(params)) return false;
  const names = params.slice(1, params.indexOf(')')).split(' ').map(s => s.replace(/"/g, ''));
  const created = Number((/;created=(\d+)/.exec(params) || [])[1]);
  if (!(Math.abs(Date.now() / 1000 - created) <= 60)) return false;
  const url = new URL(req.url, 'http://placeholder');
  const derived = { '@method': req.method, '@authority': req.headers.host, '@path': url.pathname, '@query': url.search || '?' };
  const value = n => (n in derived ? derived[n] : req.headers[n]);
  const base = names.map(n => `"${n}": ${value(n)}`).concat(`"@signature-params": ${params}`).join('\n');
  const sig = Buffer.from((/^moat=:(.*):$/.exec(signature) || [])[1] || '', 'base64');
  if (!crypto.verify(null, Buffer.from(base), key, sig)) return false;
  if (rawBody.length || req.headers['content-digest']) {
    const digest = 'sha-256=:' + crypto.createHash('sha256').update(rawBody).digest('base64') + ':';
    if (!names.includes('content-digest') || req.headers['content-digest'] !== digest) return false;
  }
  return true; // req.headers['moat-device'] (and 'moat-user') can now be trusted
}

(async () => {
  const key = await gatewayKey(process.env.MOAT_JWKS_URL);
  http.createServer((req, res) => {
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => {
      const ok = verifyMoat(key, req, Buffer.concat(chunks));
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ verified: ok, device: ok ? req.headers['moat-device'] : null, by: 'node' }));
    });
  }).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
})();
