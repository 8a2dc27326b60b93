//! One suite of behaviour every `Store` backend must show. Each backend module builds a
//! fresh store and runs the same checks.

use moat_store::accounts::{NewSms, RefreshToken, SigningKeyRecord, SmsCode, SmsOutcome};
use moat_store::attest::AttestKey;
use moat_store::{
    Attempt, Credential, NewCredential, NewMailboxItem, Opened, OtpRecord, Store, StoreError,
};
use uuid::Uuid;

fn credential(identity: &str, device_id: &str, lookup: &str) -> NewCredential {
    NewCredential {
        id: Uuid::new_v4(),
        identity: identity.into(),
        device_id: device_id.into(),
        mode: "dynamic".into(),
        platform: Some("android".into()),
        credential: Credential {
            key_lookup: Some(lookup.into()),
            key_hash: Some(vec![1; 32]),
            ..Credential::default()
        },
    }
}

fn built(id: &str, identity: &str, expires_at: i64) -> Option<moat_store::MailboxBuilder> {
    let item = item(id, identity, expires_at);
    Some(Box::new(move |_device: &moat_store::Device| Ok(item)))
}

fn item(id: &str, identity: &str, expires_at: i64) -> NewMailboxItem {
    NewMailboxItem {
        id: id.into(),
        identity: identity.into(),
        payload_sealed: id.as_bytes().to_vec(),
        expires_at,
        channel: moat_store::Channel::Builtin,
    }
}

async fn issue_rotate_revoke(store: &dyn Store) {
    let first = store
        .issue_credential(
            credential("inst:a", "d1", "aaaa"),
            built("m1", "inst:a", 700),
            100,
        )
        .await
        .expect("issue");
    assert_eq!(
        store
            .device_by_key_lookup("aaaa")
            .await
            .expect("get")
            .map(|d| d.id),
        Some(first.id)
    );
    // Re-enrolling rotates in place: same device id, new key, old key gone.
    let second = store
        .issue_credential(credential("inst:a", "d1", "bbbb"), None, 200)
        .await
        .expect("rotate");
    assert_eq!(second.id, first.id);
    assert_eq!(second.created_at, 100);
    assert_eq!(second.rotated_at, 200);
    assert!(
        store
            .device_by_key_lookup("aaaa")
            .await
            .expect("get")
            .is_none()
    );
    assert!(store.revoke_device(first.id, 300).await.expect("revoke"));
    assert!(
        !store
            .revoke_device(Uuid::new_v4(), 300)
            .await
            .expect("revoke unknown")
    );
    // A revoked device cannot be re-enrolled, and the mailbox item is not written either.
    let err = store
        .issue_credential(
            credential("inst:a", "d1", "cccc"),
            built("m2", "inst:a", 900),
            400,
        )
        .await
        .expect_err("revoked");
    assert!(matches!(err, StoreError::Conflict(_)));
    let items = store.take_mailbox("inst:a", 400, 10).await.expect("take");
    assert_eq!(
        items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["m1"]
    );
    assert!(
        store
            .latest_active_device("inst:a")
            .await
            .expect("latest")
            .is_none()
    );
}

async fn mailbox_once_expiry_and_cap(store: &dyn Store) {
    let now = 1000;
    store
        .issue_credential(
            credential("inst:m", "d1", "1111"),
            built("x1", "inst:m", now + 5),
            now,
        )
        .await
        .expect("issue");
    for i in 0..20 {
        store
            .issue_credential(
                credential("inst:m", "d1", &format!("k{i}")),
                built(&format!("y{i:02}"), "inst:m", now + 600),
                now + 1 + i,
            )
            .await
            .expect("issue");
    }
    // Another identity's items are never returned.
    assert!(
        store
            .take_mailbox("inst:other", now + 10, 100)
            .await
            .expect("take")
            .is_empty()
    );
    let items = store
        .take_mailbox("inst:m", now + 10, 100)
        .await
        .expect("take");
    assert_eq!(
        items.len() as i64,
        moat_store::MAILBOX_CAP,
        "capped per identity"
    );
    assert_eq!(items.last().map(|i| i.id.as_str()), Some("y19"));
    assert!(
        store
            .take_mailbox("inst:m", now + 10, 100)
            .await
            .expect("again")
            .is_empty(),
        "returned once"
    );
}

async fn otp_attempts_and_single_use(store: &dyn Store) {
    let otp = OtpRecord {
        id: "o1".into(),
        identity: "inst:o".into(),
        device_id: "d".into(),
        platform: None,
        secret_sealed: vec![9; 40],
        step: 5,
        attempts: 0,
        expires_at: 700,
        used_at: None,
    };
    store
        .put_enrollment_otp(otp.clone(), Some(item("o-m", "inst:o", 700)), 100)
        .await
        .expect("put");
    let Attempt::Taken(got) = store
        .take_otp_attempt("inst:o", "d", 5)
        .await
        .expect("take")
    else {
        panic!("an attempt at a fresh code is taken");
    };
    assert_eq!(got.attempts, 1);
    assert_eq!(got.id, "o1");
    assert_eq!(
        store
            .take_otp_attempt("inst:o", "other", 5)
            .await
            .expect("take"),
        Attempt::Missing,
        "another device's code is not there"
    );
    assert!(
        !store.consume_otp("o1", 800, 5).await.expect("expired"),
        "expired code not consumed"
    );
    assert!(store.consume_otp("o1", 200, 5).await.expect("consume"));
    assert!(
        !store.consume_otp("o1", 201, 5).await.expect("twice"),
        "accepted once"
    );
    // A new code replaces the old one and resets attempts.
    store
        .put_enrollment_otp(
            OtpRecord {
                id: "o2".into(),
                ..otp
            },
            None,
            300,
        )
        .await
        .expect("put");
    for n in 1..=5 {
        match store
            .take_otp_attempt("inst:o", "d", 5)
            .await
            .expect("take")
        {
            Attempt::Taken(r) => assert_eq!(r.attempts, n),
            other => panic!("attempt {n}: {other:?}"),
        }
    }
    assert_eq!(
        store
            .take_otp_attempt("inst:o", "d", 5)
            .await
            .expect("take"),
        Attempt::Locked,
        "locked after 5"
    );
    assert!(
        !store.consume_otp("o2", 301, 4).await.expect("locked"),
        "a code reached after the last attempt is not consumed"
    );
    // The fifth attempt may be the right one: it consumes the code.
    assert!(store.consume_otp("o2", 301, 5).await.expect("fifth"));
    assert_eq!(
        store
            .take_otp_attempt("inst:o", "d", 5)
            .await
            .expect("take"),
        Attempt::Missing,
        "a used code takes no more attempts"
    );
}

async fn cleanup_removes_what_it_should(store: &dyn Store) {
    store
        .issue_credential(
            credential("inst:c", "old", "c1"),
            built("c-m1", "inst:c", 50),
            10,
        )
        .await
        .expect("issue");
    store
        .issue_credential(
            credential("inst:c", "new", "c2"),
            built("c-m2", "inst:c", 5000),
            1000,
        )
        .await
        .expect("issue");
    store.touch_devices(&[]).await.expect("empty touch");
    let report = store.cleanup(100, 500, 0).await.expect("cleanup");
    assert_eq!(report.mailbox_items, 1);
    assert_eq!(report.dormant_devices, 1);
    assert!(
        store
            .device_by_key_lookup("c1")
            .await
            .expect("get")
            .is_none()
    );
    let kept = store
        .device_by_key_lookup("c2")
        .await
        .expect("get")
        .expect("kept");
    store
        .touch_devices(&[(kept.id, 2000)])
        .await
        .expect("touch");
    assert_eq!(
        store
            .device(kept.id)
            .await
            .expect("get")
            .expect("some")
            .last_used_at,
        2000
    );
    assert_eq!(
        store
            .cleanup(100, 1500, 0)
            .await
            .expect("cleanup")
            .dormant_devices,
        0
    );
}

async fn revocation_outlives_dormancy_cleanup(store: &dyn Store) {
    let device = store
        .issue_credential(credential("inst:t", "d1", "t1"), None, 10)
        .await
        .expect("issue");
    assert!(store.revoke_device(device.id, 20).await.expect("revoke"));
    // Not dormant yet: nothing changes.
    let report = store.cleanup(30, 5, 0).await.expect("cleanup");
    assert_eq!(
        (
            report.dormant_devices,
            report.revoked_credentials,
            report.expired_revocations
        ),
        (0, 0, 0)
    );
    assert!(
        store
            .device_by_key_lookup("t1")
            .await
            .expect("get")
            .is_some()
    );
    // Long dormant, within the tombstones' retention: the row stays without its credential.
    let report = store.cleanup(10_000, 5_000, 0).await.expect("cleanup");
    assert_eq!(
        (
            report.dormant_devices,
            report.revoked_credentials,
            report.expired_revocations
        ),
        (0, 1, 0)
    );
    let tombstone = store
        .device(device.id)
        .await
        .expect("get")
        .expect("the revoked row outlives the dormancy cleanup");
    assert_eq!(tombstone.status, moat_store::DeviceStatus::Revoked);
    assert_eq!(tombstone.revoked_at, Some(20));
    let c = &tombstone.credential;
    assert!(
        c.key_lookup.is_none()
            && c.key_hash.is_none()
            && c.client_id.is_none()
            && c.hmac_secret_sealed.is_none()
            && c.rsa_kid.is_none()
            && c.rsa_private_sealed.is_none()
            && c.signing_jwk.is_none(),
        "no key material is kept: {c:?}"
    );
    assert!(
        store
            .device_by_key_lookup("t1")
            .await
            .expect("get")
            .is_none()
    );
    // The same identity and device id still cannot enroll again.
    let err = store
        .issue_credential(credential("inst:t", "d1", "t2"), None, 10_001)
        .await
        .expect_err("still revoked");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // A second pass finds nothing more to do.
    let report = store.cleanup(10_002, 5_000, 0).await.expect("cleanup");
    assert_eq!(
        (report.revoked_credentials, report.expired_revocations),
        (0, 0)
    );
    // Past the retention the tombstone goes, and with it the refusal.
    let report = store.cleanup(10_003, 5_000, 21).await.expect("cleanup");
    assert_eq!(report.expired_revocations, 1);
    assert!(store.device(device.id).await.expect("get").is_none());
    store
        .issue_credential(credential("inst:t", "d1", "t3"), None, 10_004)
        .await
        .expect("enrolls again once the tombstone has expired");
}

async fn concurrent_use_once(opened: &Opened) {
    let store = &opened.store;
    // Sixteen concurrent confirmations of one OTP: exactly one consumes it.
    let otp = OtpRecord {
        id: "race".into(),
        identity: "inst:r".into(),
        device_id: "d".into(),
        platform: None,
        secret_sealed: vec![7],
        step: 1,
        attempts: 0,
        expires_at: 1_000,
        used_at: None,
    };
    store
        .put_enrollment_otp(otp, Some(item("race-m", "inst:r", 1_000)), 10)
        .await
        .expect("put otp");
    let wins = futures_join(16, |_| {
        let store = store.clone();
        async move { store.consume_otp("race", 20, 5).await.expect("consume") }
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    // Concurrent mailbox readers: every item is handed out once in all.
    for n in 0..10 {
        store
            .put_mailbox_item(item(&format!("box-{n}"), "inst:box", 1_000), 10 + n)
            .await
            .expect("put");
    }
    let taken = futures_join(8, |_| {
        let store = store.clone();
        async move { store.take_mailbox("inst:box", 20, 3).await.expect("take") }
    })
    .await;
    let mut ids: Vec<String> = taken.into_iter().flatten().map(|i| i.id).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "an item was handed out twice");
    assert_eq!(ids.len(), 10, "all ten items, each once");
}

async fn futures_join<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

/// A burst of concurrent attempts at one code (an enrollment OTP, an SMS code): exactly
/// `max` are taken, whatever the burst's size, and every other caller sees the lock. A read,
/// a compare and a separate increment let a burst of 2,000 guesses all be compared.
async fn code_attempts_hold_under_a_burst(opened: &Opened) {
    const BURST: usize = 400;
    let store = &opened.store;
    store
        .put_enrollment_otp(
            OtpRecord {
                id: "burst".into(),
                identity: "inst:burst".into(),
                device_id: "d".into(),
                platform: None,
                secret_sealed: vec![7],
                step: 1,
                attempts: 0,
                expires_at: 1_000,
                used_at: None,
            },
            None,
            10,
        )
        .await
        .expect("put otp");
    let outcomes = futures_join(BURST, |_| {
        let store = store.clone();
        async move {
            store
                .take_otp_attempt("inst:burst", "d", 5)
                .await
                .expect("take")
        }
    })
    .await;
    let mut counts: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Attempt::Taken(r) => Some(r.attempts),
            _ => None,
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2, 3, 4, 5], "each attempt counted once");
    assert_eq!(
        outcomes.iter().filter(|o| **o == Attempt::Locked).count(),
        BURST - 5
    );
    let accounts = &opened.accounts;
    accounts
        .put_sms_code(
            SmsCode {
                phone: "+15550199".into(),
                purpose: "password_reset".into(),
                code_hash: vec![4; 32],
                device: Some("dev".into()),
                pending_password: None,
                attempts: 0,
                created_at: 100,
                expires_at: 700,
            },
            None,
            100,
        )
        .await
        .expect("put code");
    let outcomes = futures_join(BURST, |_| {
        let accounts = accounts.clone();
        async move {
            accounts
                .take_sms_code_attempt("+15550199", "password_reset", "dev", 5)
                .await
                .expect("take")
        }
    })
    .await;
    let mut counts: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Attempt::Taken(c) => Some(c.attempts),
            _ => None,
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2, 3, 4, 5], "each attempt counted once");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Attempt::Locked))
            .count(),
        BURST - 5
    );
}

async fn leases_one_holder(opened: &Opened) {
    let store = &opened.store;
    assert!(
        store
            .acquire_lease("cleanup", "a", 100, 160)
            .await
            .expect("a takes")
    );
    assert!(
        !store
            .acquire_lease("cleanup", "b", 120, 180)
            .await
            .expect("b waits")
    );
    assert!(
        store
            .acquire_lease("cleanup", "a", 150, 210)
            .await
            .expect("a renews")
    );
    assert!(
        !store
            .acquire_lease("cleanup", "b", 200, 260)
            .await
            .expect("still a's")
    );
    assert!(
        store
            .acquire_lease("cleanup", "b", 210, 270)
            .await
            .expect("expired: b takes")
    );
    assert!(
        store
            .acquire_lease("other", "a", 210, 270)
            .await
            .expect("names are separate")
    );
    let wins = futures_join(8, |i| {
        let store = store.clone();
        async move {
            store
                .acquire_lease("race", &format!("h{i}"), 300, 360)
                .await
                .expect("lease")
        }
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
}

async fn accounts_codes_users_tokens_sms(opened: &Opened) {
    let accounts = &opened.accounts;
    let code = SmsCode {
        phone: "+15550100".into(),
        purpose: "register".into(),
        code_hash: vec![1, 2, 3],
        device: Some("dev".into()),
        pending_password: Some("$argon2id$hash".into()),
        attempts: 0,
        created_at: 100,
        expires_at: 400,
    };
    let sms = NewSms {
        id: "sms-1".into(),
        sender: "outbox".into(),
        phone: "+15550100".into(),
        country: "US".into(),
        purpose: "register".into(),
        body_sealed: vec![9; 4],
    };
    accounts
        .put_sms_code(code.clone(), Some(sms), 100)
        .await
        .expect("put code");
    match accounts
        .take_sms_code_attempt("+15550100", "register", "dev", 5)
        .await
        .expect("take")
    {
        Attempt::Taken(c) => assert_eq!(c.attempts, 1),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        accounts
            .take_sms_code_attempt("+15550100", "register", "other-dev", 5)
            .await
            .expect("take"),
        Attempt::Missing
    ));
    let stored = accounts
        .sms_code("+15550100", "register")
        .await
        .expect("get")
        .expect("some");
    assert_eq!(stored.code_hash, vec![1, 2, 3]);
    assert_eq!(stored.pending_password.as_deref(), Some("$argon2id$hash"));
    // A code made at another time is not this one.
    assert!(
        accounts
            .create_user("+15550100", 99, Uuid::new_v4(), "h", 110)
            .await
            .expect("create")
            .is_none()
    );
    let id = Uuid::new_v4();
    let user = accounts
        .create_user("+15550100", 100, id, "h", 110)
        .await
        .expect("create")
        .expect("created");
    assert_eq!(user.id, id);
    assert!(
        accounts
            .create_user("+15550100", 100, Uuid::new_v4(), "h", 111)
            .await
            .expect("again")
            .is_none(),
        "a code is consumed once"
    );
    assert_eq!(
        accounts
            .record_login_failure(id, 200, 2, 60)
            .await
            .expect("fail"),
        1
    );
    accounts
        .record_login_failure(id, 200, 2, 60)
        .await
        .expect("fail");
    assert_eq!(
        accounts
            .user(id)
            .await
            .expect("get")
            .expect("some")
            .locked_until,
        260
    );
    accounts.clear_login_failures(id).await.expect("clear");
    assert_eq!(
        accounts
            .user_by_phone("+15550100")
            .await
            .expect("get")
            .expect("some")
            .failed_logins,
        0
    );

    // SMS queue: claimed once across concurrent workers; a crash leaves it `sending` until
    // requeued by age.
    let claims = futures_join(4, |_| {
        let accounts = accounts.clone();
        async move { accounts.claim_due_sms(150, 10).await.expect("claim") }
    })
    .await;
    let claimed: Vec<_> = claims.into_iter().flatten().collect();
    assert_eq!(claimed.len(), 1, "claimed by exactly one worker");
    assert_eq!(claimed[0].status, "sending");
    assert_eq!(
        accounts
            .requeue_stuck_sms(150)
            .await
            .expect("not stuck yet"),
        0
    );
    assert_eq!(accounts.requeue_stuck_sms(151).await.expect("stuck"), 1);
    let again = accounts.claim_due_sms(160, 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    accounts
        .finish_sms(
            "sms-1",
            SmsOutcome::Sent {
                provider_id: Some("p1".into()),
            },
            170,
        )
        .await
        .expect("finish");
    let listed = accounts
        .list_sms(Some("+15550100"), 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, "sent");
    assert_eq!(listed[0].attempts, 2);
    assert_eq!(accounts.list_sms(None, 10).await.expect("list").len(), 1);

    // Refresh tokens rotate once; a family is revoked together.
    for lookup in ["r1", "r2"] {
        accounts
            .insert_refresh_token(RefreshToken {
                lookup: lookup.into(),
                hash: vec![5; 32],
                family: "fam".into(),
                user_id: id,
                device: "dev".into(),
                status: "active".into(),
                created_at: 100,
                expires_at: 1000,
            })
            .await
            .expect("insert");
    }
    assert!(
        accounts
            .rotate_refresh_token("r1", 200, None)
            .await
            .expect("use")
    );
    assert!(
        !accounts
            .rotate_refresh_token("r1", 201, None)
            .await
            .expect("reuse")
    );
    assert_eq!(
        accounts
            .refresh_token("r1")
            .await
            .expect("get")
            .expect("some")
            .status,
        "used"
    );
    assert_eq!(
        accounts.revoke_refresh_family("fam").await.expect("revoke"),
        1
    );

    // Signing keys: one current at a time.
    for (kid, at) in [("k1", 100), ("k2", 200)] {
        accounts
            .rotate_signing_key(
                SigningKeyRecord {
                    kid: kid.into(),
                    private_sealed: vec![1],
                    public_jwk: "{}".into(),
                    created_at: at,
                    retired_at: None,
                },
                at,
            )
            .await
            .expect("rotate");
    }
    let keys = accounts.signing_keys().await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].kid.as_str(), keys[0].retired_at), ("k2", None));
    assert_eq!(keys[1].retired_at, Some(200));
}

async fn attestation_records(opened: &Opened) {
    let attest = &opened.attest;
    let package: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    attest
        .put_release("app", "1.0", &package, &[3; 32], 100)
        .await
        .expect("put");
    assert!(matches!(
        attest
            .put_release("app", "1.0", &package, &[3; 32], 101)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let parts = attest
        .release_ranges("app", "1.0", &[(0, 4), (9_998, 10), (5_000, 3)])
        .await
        .expect("ranges");
    assert_eq!(parts[0], package[0..4]);
    assert_eq!(
        parts[1],
        package[9_998..],
        "a range past the end is cut at the end"
    );
    assert_eq!(parts[2], package[5_000..5_003]);
    assert!(attest.retire_release("app", "1.0").await.expect("retire"));
    assert_eq!(
        attest
            .release("app", "1.0")
            .await
            .expect("get")
            .expect("some")
            .status,
        "retired"
    );
    attest
        .put_attest_key(
            AttestKey {
                key_id: "key".into(),
                device: "dev".into(),
                public_key: vec![4; 65],
                counter: 0,
                environment: "production".into(),
            },
            100,
        )
        .await
        .expect("put key");
    assert!(
        attest
            .advance_attest_counter("key", 0, 5)
            .await
            .expect("advance")
    );
    assert!(
        !attest
            .advance_attest_counter("key", 0, 6)
            .await
            .expect("stale")
    );
    assert!(
        !attest
            .advance_attest_counter("key", 5, 5)
            .await
            .expect("not greater")
    );
    assert_eq!(
        attest
            .attest_key("key")
            .await
            .expect("get")
            .expect("some")
            .counter,
        5
    );
}

async fn remote_items_are_indexed_not_served(opened: &Opened) {
    let store = &opened.store;
    for (id, expires_at) in [("fb-1", 100), ("fb-2", 200), ("fb-3", 900)] {
        store
            .put_mailbox_item(
                NewMailboxItem {
                    channel: moat_store::Channel::Firebase,
                    payload_sealed: Vec::new(),
                    ..item(id, "fb:uid-1", expires_at)
                },
                10,
            )
            .await
            .expect("index");
    }
    store
        .put_mailbox_item(item("local", "fb:uid-1", 900), 10)
        .await
        .expect("builtin");
    // The built-in mailbox never hands out an index row.
    let taken = store.take_mailbox("fb:uid-1", 50, 16).await.expect("take");
    assert_eq!(
        taken.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["local"]
    );
    // Cleanup leaves index rows to the job that deletes the remote items first.
    assert_eq!(
        store
            .cleanup(1_000, 0, 0)
            .await
            .expect("cleanup")
            .mailbox_items,
        0
    );
    let due = store
        .expired_items(moat_store::Channel::Firebase, 250, 10)
        .await
        .expect("due");
    assert_eq!(
        due.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["fb-1", "fb-2"]
    );
    assert_eq!(due[0].identity, "fb:uid-1");
    assert!(store.remove_mailbox_item("fb-1").await.expect("remove"));
    assert!(!store.remove_mailbox_item("fb-1").await.expect("gone"));
    assert!(
        store
            .expired_items(moat_store::Channel::Builtin, 10_000, 10)
            .await
            .expect("builtin")
            .is_empty(),
        "taken built-in items are gone"
    );
}

async fn audit_log_and_daily_stats(opened: &Opened) {
    use moat_store::ops::{AuditQuery, NewAuditEvent, StatDelta};
    let ops = &*opened.ops;
    let event = |at: i64, kind: &str, subject: &str| NewAuditEvent {
        at,
        kind: kind.into(),
        actor: "admin".into(),
        subject: Some(subject.into()),
        ip: Some("192.0.2.7".into()),
        detail: Some(r#"{"mode":"otp"}"#.into()),
    };
    ops.append_audit(&[
        event(100, "device.enrolled", "d1"),
        event(200, "device.revoked", "d1"),
        event(300, "device.enrolled", "d2"),
    ])
    .await
    .expect("append");
    let all = ops
        .audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("all");
    // Newest first, every field kept.
    assert_eq!(
        all.iter().map(|e| e.event.at).collect::<Vec<_>>(),
        [300, 200, 100]
    );
    assert_eq!(all[2].event, event(100, "device.enrolled", "d1"));
    let q = |kind: Option<&str>, subject: Option<&str>, since: Option<i64>, until: Option<i64>| {
        AuditQuery {
            kind: kind.map(Into::into),
            subject: subject.map(Into::into),
            since,
            until,
            before_id: None,
            limit: 10,
        }
    };
    let ats =
        |v: Vec<moat_store::ops::AuditEvent>| v.iter().map(|e| e.event.at).collect::<Vec<_>>();
    assert_eq!(
        ats(ops
            .audit(&q(Some("device.enrolled"), None, None, None))
            .await
            .expect("kind")),
        [300, 100]
    );
    assert_eq!(
        ats(ops
            .audit(&q(None, Some("d1"), None, None))
            .await
            .expect("subject")),
        [200, 100]
    );
    assert_eq!(
        ats(ops
            .audit(&q(None, None, Some(200), Some(300)))
            .await
            .expect("range")),
        [200]
    );
    // Paging: the page after the newest event.
    let page = ops
        .audit(&AuditQuery {
            before_id: Some(all[0].id.clone()),
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .expect("page");
    assert_eq!(ats(page), [200]);

    let delta = |day: i64, metric: &str, label: &str, value: i64| StatDelta {
        day,
        metric: metric.into(),
        label: label.into(),
        value,
    };
    ops.add_stats(&[
        delta(10, "enroll", "otp/builtin", 2),
        delta(10, "refused_ip", "192.0.2.1", 5),
        delta(11, "refused_ip", "192.0.2.2", 4),
        delta(11, "refused_ip", "192.0.2.1", 1),
    ])
    .await
    .expect("add");
    // A second instance adds to the same counters.
    ops.add_stats(&[
        delta(10, "enroll", "otp/builtin", 3),
        delta(12, "refused_ip", "192.0.2.2", 9),
    ])
    .await
    .expect("add again");
    let rows = ops.stats("enroll", 0, 100).await.expect("stats");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].day, rows[0].value), (10, 5));
    assert_eq!(
        ops.top_stats("refused_ip", 10, 11, 10).await.expect("top"),
        [("192.0.2.1".to_owned(), 6), ("192.0.2.2".to_owned(), 4)]
    );
    assert_eq!(
        ops.top_stats("refused_ip", 0, 100, 1).await.expect("top 1"),
        [("192.0.2.2".to_owned(), 13)]
    );
    // Retention: events before 200 and counters before day 11 go.
    assert_eq!(ops.purge_ops(200, 11).await.expect("purge"), 1 + 2);
    assert_eq!(
        ats(ops.audit(&q(None, None, None, None)).await.expect("after")),
        [300, 200]
    );
    assert!(ops.stats("enroll", 0, 100).await.expect("stats").is_empty());
}

/// Concurrent callers in the burst tests: as many as the HTTP bursts send at once.
const CALLERS: usize = 300;

/// A refresh token of family `family`.
fn refresh_token(lookup: &str, family: &str, user_id: Uuid) -> RefreshToken {
    RefreshToken {
        lookup: lookup.into(),
        hash: vec![5; 32],
        family: family.into(),
        user_id,
        device: "dev".into(),
        status: "active".into(),
        created_at: 100,
        expires_at: 1000,
    }
}

/// Each once-only operation of the store, by [`CALLERS`] callers at once: one of them wins, or
/// each item goes to one of them.
async fn once_only_under_bursts(opened: &Opened) {
    // A refresh token rotated by every caller, each with its own successor: one rotation, and
    // only its successor is stored.
    let accounts = &opened.accounts;
    let user = Uuid::new_v4();
    accounts
        .insert_refresh_token(refresh_token("burst", "burst-fam", user))
        .await
        .expect("insert");
    let wins = futures_join(CALLERS, |i| {
        let accounts = accounts.clone();
        async move {
            let next = refresh_token(&format!("burst-next-{i}"), "burst-fam", user);
            accounts
                .rotate_refresh_token("burst", 200, Some(next))
                .await
                .expect("rotate")
        }
    })
    .await;
    let winners: Vec<usize> = (0..CALLERS).filter(|i| wins[*i]).collect();
    assert_eq!(winners.len(), 1, "one rotation: {winners:?}");
    for i in 0..CALLERS {
        let stored = accounts
            .refresh_token(&format!("burst-next-{i}"))
            .await
            .expect("get");
        assert_eq!(stored.is_some(), i == winners[0], "successor {i}");
    }
    assert_eq!(
        accounts
            .revoke_refresh_family("burst-fam")
            .await
            .expect("revoke"),
        1,
        "the family holds the one successor"
    );

    // An App Attest counter moved from 0 by every caller: once.
    let attest = &opened.attest;
    attest
        .put_attest_key(
            AttestKey {
                key_id: "burst-key".into(),
                device: "dev".into(),
                public_key: vec![4; 65],
                counter: 0,
                environment: "production".into(),
            },
            100,
        )
        .await
        .expect("put key");
    let wins = futures_join(CALLERS, |i| {
        let attest = attest.clone();
        async move {
            attest
                .advance_attest_counter("burst-key", 0, 1 + (i % 3) as i64)
                .await
                .expect("advance")
        }
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "counter moved once");

    // Sixteen mailbox items (the cap) read by every caller: each handed out once.
    let store = &opened.store;
    for n in 0..16 {
        store
            .put_mailbox_item(item(&format!("burst-box-{n}"), "inst:burst", 1_000), 10 + n)
            .await
            .expect("put");
    }
    let taken = futures_join(CALLERS, |_| {
        let store = store.clone();
        async move {
            store
                .take_mailbox("inst:burst", 30, 16)
                .await
                .expect("take")
        }
    })
    .await;
    let mut ids: Vec<String> = taken.into_iter().flatten().map(|i| i.id).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (16, 16), "sixteen items, each once");

    // The cleanup lease asked for by every caller at once: one holder.
    let wins = futures_join(CALLERS, |i| {
        let store = store.clone();
        async move {
            store
                .acquire_lease("burst", &format!("h{i}"), 300, 360)
                .await
                .expect("lease")
        }
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "one holder");

    // Queued SMS claimed by every caller at once: each message is claimed (sent) once.
    for n in 0..CALLERS {
        let code = SmsCode {
            phone: format!("+1555020{n:04}"),
            purpose: "register".into(),
            code_hash: vec![1],
            device: None,
            pending_password: None,
            attempts: 0,
            created_at: 100,
            expires_at: 400,
        };
        let sms = NewSms {
            id: format!("burst-sms-{n:04}"),
            sender: "outbox".into(),
            phone: code.phone.clone(),
            country: "US".into(),
            purpose: "register".into(),
            body_sealed: vec![9],
        };
        accounts
            .put_sms_code(code, Some(sms), 100)
            .await
            .expect("queue");
    }
    let claimed = futures_join(CALLERS, |_| {
        let accounts = accounts.clone();
        async move { accounts.claim_due_sms(200, 32).await.expect("claim") }
    })
    .await;
    let mut ids: Vec<String> = claimed.into_iter().flatten().map(|m| m.id).collect();
    // Callers that found the due messages taken come back empty; the rest are claimed after.
    loop {
        let more = accounts.claim_due_sms(200, 32).await.expect("claim");
        if more.is_empty() {
            break;
        }
        ids.extend(more.into_iter().map(|m| m.id));
    }
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (CALLERS, CALLERS), "each message once");
}

/// Counters of the store, by [`CALLERS`] callers at once: every count is seen once and none is
/// lost.
async fn counters_under_bursts(opened: &Opened) {
    // Failed logins of one user: the counts returned are 1..=CALLERS, each once.
    let accounts = &opened.accounts;
    let code = SmsCode {
        phone: "+15550199".into(),
        purpose: "register".into(),
        code_hash: vec![1],
        device: None,
        pending_password: None,
        attempts: 0,
        created_at: 100,
        expires_at: 400,
    };
    accounts.put_sms_code(code, None, 100).await.expect("code");
    let user = accounts
        .create_user("+15550199", 100, Uuid::new_v4(), "h", 110)
        .await
        .expect("create")
        .expect("created");
    let mut counts = futures_join(CALLERS, |_| {
        let accounts = accounts.clone();
        async move {
            accounts
                .record_login_failure(user.id, 200, 10, 900)
                .await
                .expect("count")
        }
    })
    .await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=CALLERS as i64).collect::<Vec<_>>());
    let user = accounts.user(user.id).await.expect("get").expect("user");
    assert_eq!(
        (user.failed_logins, user.locked_until),
        (CALLERS as i64, 1100)
    );

    // A daily counter added to by every caller: the sum.
    let ops = &opened.ops;
    futures_join(CALLERS, |_| {
        let ops = ops.clone();
        async move {
            ops.add_stats(&[moat_store::ops::StatDelta {
                day: 20,
                metric: "sms".into(),
                label: "sent".into(),
                value: 1,
            }])
            .await
            .expect("add")
        }
    })
    .await;
    let rows = ops.stats("sms", 20, 20).await.expect("stats");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, CALLERS as i64);
}

macro_rules! conformance {
    ($make:expr) => {
        #[tokio::test]
        async fn issue_rotate_revoke() {
            let (opened, _guard) = $make;
            super::issue_rotate_revoke(&*opened.store).await;
        }
        #[tokio::test]
        async fn mailbox_once_expiry_and_cap() {
            let (opened, _guard) = $make;
            super::mailbox_once_expiry_and_cap(&*opened.store).await;
        }
        #[tokio::test]
        async fn otp_attempts_and_single_use() {
            let (opened, _guard) = $make;
            super::otp_attempts_and_single_use(&*opened.store).await;
        }
        #[tokio::test]
        async fn cleanup_removes_what_it_should() {
            let (opened, _guard) = $make;
            super::cleanup_removes_what_it_should(&*opened.store).await;
        }
        #[tokio::test]
        async fn revocation_outlives_dormancy_cleanup() {
            let (opened, _guard) = $make;
            super::revocation_outlives_dormancy_cleanup(&*opened.store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_use_once() {
            let (opened, _guard) = $make;
            super::concurrent_use_once(&opened).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn code_attempts_hold_under_a_burst() {
            let (opened, _guard) = $make;
            super::code_attempts_hold_under_a_burst(&opened).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn once_only_under_bursts() {
            let (opened, _guard) = $make;
            super::once_only_under_bursts(&opened).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn counters_under_bursts() {
            let (opened, _guard) = $make;
            super::counters_under_bursts(&opened).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn leases_one_holder() {
            let (opened, _guard) = $make;
            super::leases_one_holder(&opened).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn accounts_codes_users_tokens_sms() {
            let (opened, _guard) = $make;
            super::accounts_codes_users_tokens_sms(&opened).await;
        }
        #[tokio::test]
        async fn remote_items_are_indexed_not_served() {
            let (opened, _guard) = $make;
            super::remote_items_are_indexed_not_served(&opened).await;
        }
        #[tokio::test]
        async fn audit_log_and_daily_stats() {
            let (opened, _guard) = $make;
            super::audit_log_and_daily_stats(&opened).await;
        }
        #[tokio::test]
        async fn attestation_records() {
            let (opened, _guard) = $make;
            super::attestation_records(&opened).await;
        }
    };
}

mod sqlite {
    async fn make() -> (moat_store::Opened, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/moat.db", dir.path().display());
        let opened = moat_store::open(&url, &moat_store::PoolOptions::default())
            .await
            .expect("open");
        (opened, dir)
    }

    conformance!(make().await);
}

/// The same suite against a real PostgreSQL server (one cluster per test).
mod postgres {
    async fn make() -> (moat_store::Opened, moat_testkit::Postgres) {
        let pg = tokio::task::spawn_blocking(moat_testkit::Postgres::start)
            .await
            .expect("start postgres");
        let url = pg.database();
        let opened = moat_store::open(&url, &moat_store::PoolOptions::default())
            .await
            .expect("open");
        (opened, pg)
    }

    conformance!(make().await);
}
