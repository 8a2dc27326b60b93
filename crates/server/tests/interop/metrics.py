"""Parses Moat's /metrics with the Prometheus project's own Python parsers.

usage: metrics.py URL
Fetches URL twice, as Prometheus text (0.0.4) and as OpenMetrics 1.0, parses each with
prometheus_client's parser for that format (the OpenMetrics one is strict: it rejects a
malformed exposition), and prints one JSON object: {"text": [samples], "openmetrics": [samples]}
with each sample as [name, labels, value].
"""

import json
import sys

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text


def samples(families):
    out = []
    for family in families:
        for s in family.samples:
            out.append([s.name, s.labels, s.value])
    return out


url = sys.argv[1]
text = requests.get(url, timeout=10)
assert text.headers["content-type"].startswith("text/plain; version=0.0.4"), text.headers
om = requests.get(
    url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10
)
assert om.headers["content-type"].startswith("application/openmetrics-text"), om.headers
print(json.dumps({"text": samples(parse_text(text.text)), "openmetrics": samples(parse_om(om.text))}))
