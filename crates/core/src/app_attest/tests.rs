use serde_json::Value;

use super::*;

fn samples() -> Value {
    serde_json::from_str(include_str!("../../vectors/apple_app_attest_samples.json"))
        .expect("samples")
}

fn unix(rfc3339_prefix: &str) -> u64 {
    // "YYYY-MM-DDTHH:MM:SSZ…" → Unix seconds (days from civil, UTC).
    let p = |a: usize, b: usize| rfc3339_prefix[a..b].parse::<i64>().expect("digits");
    let (y, m, d) = (p(0, 4), p(5, 7), p(8, 10));
    let (hh, mm, ss) = (p(11, 13), p(14, 16), p(17, 19));
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).expect("positive")
}

fn client_data_hash(s: &Value) -> [u8; 32] {
    crate::b64::std_decode(s["client_data_hash_base64"].as_str().expect("hash"))
        .expect("b64")
        .try_into()
        .expect("32")
}

#[test]
fn the_three_published_attestations_verify_at_their_pinned_times() {
    let root = apple_root_der().expect("root");
    let digest_hex: String = digest(&SHA256, &root)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest_hex,
        "1cb9823ba28ba6ad2d33a006941de2ae4f513ef1d4e831b9f7e0fa7b6242c932"
    );
    for s in samples()["attestations"].as_array().expect("attestations") {
        let att = crate::b64::std_decode(s["attestation_object_base64"].as_str().expect("att"))
            .expect("b64");
        let key_id =
            crate::b64::std_decode(s["key_id_base64"].as_str().expect("kid")).expect("b64");
        let app_id = s["app_id"].as_str().expect("app id");
        let at = unix(s["pinned_verification_time"].as_str().expect("time"));
        let ok = verify_attestation(&att, &client_data_hash(s), app_id, &key_id, &root, at)
            .unwrap_or_else(|e| panic!("{}: {e}", s["name"]));
        assert_eq!(ok.key_id.as_slice(), key_id.as_slice());
        let expected_env = if s["environment"]
            .as_str()
            .expect("env")
            .starts_with("production")
        {
            Environment::Production
        } else {
            Environment::Development
        };
        assert_eq!(ok.environment, expected_env, "{}", s["name"]);

        // After the leaf expired, with another client data hash, for another app, or for
        // another key id, the same object fails.
        let leaf_end = unix(s["leaf_cert_valid"][1].as_str().expect("end"));
        assert!(
            verify_attestation(
                &att,
                &client_data_hash(s),
                app_id,
                &key_id,
                &root,
                leaf_end + 86_400
            )
            .is_err()
        );
        assert!(verify_attestation(&att, &[0u8; 32], app_id, &key_id, &root, at).is_err());
        assert!(
            verify_attestation(
                &att,
                &client_data_hash(s),
                "TEAMID.com.evil",
                &key_id,
                &root,
                at
            )
            .is_err()
        );
        assert!(
            verify_attestation(&att, &client_data_hash(s), app_id, &[1u8; 32], &root, at).is_err()
        );
        // Another root (a self-signed one) does not anchor Apple's chain.
        let mut tampered = att.clone();
        let last = tampered.len() - 40;
        tampered[last] ^= 1;
        assert!(
            verify_attestation(&tampered, &client_data_hash(s), app_id, &key_id, &root, at)
                .is_err()
        );
    }
}

fn public_point(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = crate::b64::std_decode(body.trim()).expect("b64");
    der[der.len() - 65..].to_vec()
}

#[test]
fn the_two_published_assertions_verify_and_replays_do_not() {
    for s in samples()["assertions"].as_array().expect("assertions") {
        let assertion = crate::b64::std_decode(s["assertion_base64"].as_str().expect("assertion"))
            .expect("b64");
        let app_id = format!(
            "{}.{}",
            s["team_id"].as_str().expect("team"),
            s["bundle_id"].as_str().expect("bundle")
        );
        let key = public_point(s["public_key_pem"].as_str().expect("pem"));
        let counter = verify_assertion(&assertion, &client_data_hash(s), &app_id, &key, 0)
            .unwrap_or_else(|e| panic!("{}: {e}", s["name"]));
        assert_eq!(
            i64::from(counter),
            s["expected"]["counter"].as_i64().expect("counter")
        );
        assert!(
            verify_assertion(&assertion, &client_data_hash(s), &app_id, &key, counter).is_err(),
            "a replay does not increase the counter"
        );
        let other: [u8; 32] = digest(&SHA256, b"{}").as_ref().try_into().expect("32");
        assert!(
            verify_assertion(&assertion, &other, &app_id, &key, 0).is_err(),
            "other client data"
        );
        assert!(
            verify_assertion(&assertion, &client_data_hash(s), "X.other.app", &key, 0).is_err()
        );
    }
}
