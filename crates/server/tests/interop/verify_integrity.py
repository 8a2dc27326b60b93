"""Verifies a Moat integrity token the way an API server in another language would: a stock
JWT library, HS256, the shared secret chosen by `kid`.

  verify_integrity.py ISSUER DEVICE KEYS_JSON TOKEN   -> prints "valid" or "invalid: <reason>"
"""

import base64
import json
import sys

import jwt

issuer, device, keys_json, token = sys.argv[1:5]
keys = {k["kid"]: base64.urlsafe_b64decode(k["secret"] + "=" * (-len(k["secret"]) % 4)) for k in json.loads(keys_json)}
try:
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, keys[kid], algorithms=["HS256"], issuer=issuer, options={"require": ["exp", "iss", "sub"]})
    if claims["sub"] != device:
        raise ValueError("token for another device")
    print("valid")
except Exception as e:  # noqa: BLE001 - report any refusal
    print(f"invalid: {type(e).__name__}")
