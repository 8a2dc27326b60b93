// Prints the static headers for the Node baseline: a valid JWT and request HMAC.
'use strict';
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const secret = crypto.createSecretKey(Buffer.from(process.env.SECRET));
const [path] = process.argv.slice(2);
const ts = String(Math.floor(Date.now() / 1000));
const token = jwt.sign({ sub: 'user-1' }, secret, { algorithm: 'HS256', expiresIn: 3600 });
const mac = crypto.createHmac('sha256', secret).update(`GET ${path} ${ts}`).digest('hex');
console.log(JSON.stringify([`Authorization: Bearer ${token}`, `X-Timestamp: ${ts}`, `X-Signature: ${mac}`]));
