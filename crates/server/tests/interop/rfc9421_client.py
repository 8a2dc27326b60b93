"""An independent RFC 9421 peer for Moat's interop tests (Python `http-message-signatures`).

  rfc9421_client.py send BASE CLIENT_ID HMAC_SECRET
      Signs POST BASE/v1/device/echo with hmac-sha256 and sends it three times: once as is,
      once replayed byte for byte, once with the body changed. Prints the three answers.
  rfc9421_client.py verify URL CLIENT_ID HMAC_SECRET BODY "Name: value"...
      Verifies a request signed by Moat's SDK. Prints "verified".
"""

import base64
import datetime
import json
import secrets
import sys

import requests
import http_message_signatures as hms
from http_message_signatures import algorithms


def secret_bytes(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def resolver(client_id, secret):
    key = secret_bytes(secret)
    return hms.MappingKeyResolver(public_keys={client_id: key}, private_keys={client_id: key})


def answer(response):
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return {"status": response.status_code, "body": body}


def send(base, client_id, secret):
    signer = hms.HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=resolver(client_id, secret))
    body = json.dumps({"from": "python"}).encode()
    request = requests.Request(
        "POST", base + "/v1/device/echo", data=body, headers={"Content-Type": "application/json"}
    ).prepare()
    signer.sign(
        request,
        key_id=client_id,
        created=datetime.datetime.now(datetime.timezone.utc),
        nonce=secrets.token_urlsafe(16),
        label="moat",
        covered_component_ids=("@method", "@authority", "@path"),
        body=body,
    )
    session = requests.Session()
    first = session.send(request)
    replay = session.send(request)
    tampered = request.copy()
    tampered.body = json.dumps({"from": "mallory"}).encode()
    tampered.headers["Content-Length"] = str(len(tampered.body))
    changed = session.send(tampered)
    print(json.dumps({"first": answer(first), "replay": answer(replay), "tampered": answer(changed)}))


def verify(url, client_id, secret, body, header_lines):
    headers = {}
    for line in header_lines:
        name, value = line.split(": ", 1)
        headers[name] = value
    request = requests.Request("POST", url, data=body.encode(), headers=headers).prepare()
    verifier = hms.HTTPMessageVerifier(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=resolver(client_id, secret))
    results = verifier.verify(
        request,
        max_age=datetime.timedelta(minutes=5),
        require_components=("@method", "@authority", "@path", "@query", "content-digest"),
        body=body.encode(),
    )
    assert len(results) == 1
    print("verified")


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(*sys.argv[2:5])
    elif sys.argv[1] == "verify":
        verify(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
    else:
        sys.exit("usage: see the module docstring")
