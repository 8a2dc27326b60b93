"""Makes platform attestation tokens with independent libraries, for Moat's tests.

  platform_tokens.py play-keys DIR
      writes DIR/decryption.b64 (AES-256, base64), DIR/verification.b64 (EC P-256 SPKI DER,
      base64) and DIR/signing.json (private JWK): the Play Console's two keys and Google's
      signing key.
  platform_tokens.py play DIR JSON_PAYLOAD
      prints a Play Integrity token: JWE (A256KW + A256GCM) around a JWS (ES256), jwcrypto.
  platform_tokens.py appcheck-keys DIR KID
      writes DIR/appcheck.pem (RSA-2048) and DIR/jwks.json.
  platform_tokens.py appcheck DIR KID JSON_CLAIMS
      prints an App Check token (RS256, PyJWT).
"""

import base64
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwe, jwk, jws
from jwcrypto.common import json_encode


def play_keys(d):
    aes = os.urandom(32)
    signing = ec.generate_private_key(ec.SECP256R1())
    spki = signing.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    open(os.path.join(d, "decryption.b64"), "w").write(base64.b64encode(aes).decode())
    open(os.path.join(d, "verification.b64"), "w").write(base64.b64encode(spki).decode())
    key = jwk.JWK.from_pyca(signing)
    open(os.path.join(d, "signing.json"), "w").write(key.export_private())


def play(d, payload):
    signing = jwk.JWK.from_json(open(os.path.join(d, "signing.json")).read())
    token = jws.JWS(payload.encode())
    token.add_signature(signing, alg="ES256", protected=json_encode({"alg": "ES256"}))
    inner = token.serialize(compact=True)
    aes = base64.b64decode(open(os.path.join(d, "decryption.b64")).read())
    kek = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(aes).rstrip(b"=").decode())
    outer = jwe.JWE(inner.encode(), protected=json_encode({"alg": "A256KW", "enc": "A256GCM"}))
    outer.add_recipient(kek)
    print(outer.serialize(compact=True))


def appcheck_keys(d, kid):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    open(os.path.join(d, "appcheck.pem"), "wb").write(pem)
    public = json.loads(jwk.JWK.from_pyca(key.public_key()).export_public())
    public.update({"kid": kid, "alg": "RS256", "use": "sig"})
    open(os.path.join(d, "jwks.json"), "w").write(json.dumps({"keys": [public]}))


def appcheck(d, kid, claims):
    pem = open(os.path.join(d, "appcheck.pem"), "rb").read()
    print(jwt.encode(json.loads(claims), pem, algorithm="RS256", headers={"kid": kid, "typ": "JWT"}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"play-keys": play_keys, "play": play, "appcheck-keys": appcheck_keys, "appcheck": appcheck}[cmd](*args)
