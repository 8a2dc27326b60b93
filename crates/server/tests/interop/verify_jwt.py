"""Verifies a Moat access token with PyJWT, using only the published JWKS.

  verify_jwt.py JWKS_URL ISSUER TOKEN   -> prints the verified claims as JSON
"""

import json
import sys
import urllib.request

import jwt

jwks_url, issuer, token = sys.argv[1:4]
with urllib.request.urlopen(jwks_url) as response:
    jwks = json.load(response)
kid = jwt.get_unverified_header(token)["kid"]
key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid)
claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer=issuer, options={"require": ["exp", "iss", "sub"]})
print(json.dumps(claims))
