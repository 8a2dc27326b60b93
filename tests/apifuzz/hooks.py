"""Schemathesis hooks for Moat's API fuzzing (scripts/api-fuzz.sh).

Enrollment and the built-in mailbox take no API key: they identify the caller by an RFC 9449
DPoP proof of its installation key (PROTOCOL section 2). Schemathesis cannot make one, so
without help every request to them would stop at `401 identity_invalid`. This auth provider
signs a fresh proof for each generated request (one installation key per run, a new `jti`
each time), so the fuzzed bodies reach the enrollment logic itself.

Environment: MOAT_FUZZ_BASE, the server's public base URL (`server.public_base_url`), which
the proofs' `htu` must match.
"""

import os
import time
import uuid

import jwt
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

BASE = os.environ["MOAT_FUZZ_BASE"].rstrip("/")
DPOP_PATHS = ["/v1/enroll", "/v1/enroll/confirm", "/v1/mailbox"]


@schemathesis.auth().apply_to(path=DPOP_PATHS)
class DPoP:
    """A DPoP proof for each request, made with one P-256 key."""

    def get(self, case, ctx):
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return key, {k: jwk[k] for k in ("kty", "crv", "x", "y")}

    def set(self, case, data, ctx):
        key, jwk = data
        claims = {
            "jti": str(uuid.uuid4()),
            "htm": case.method.upper(),
            "htu": BASE + case.formatted_path,
            "iat": int(time.time()),
        }
        proof = jwt.encode(claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})
        case.headers = {**(case.headers or {}), "DPoP": proof}
