//! One suite of behaviour every `Store` backend must show. Each backend module builds a
//! fresh store and runs the same checks.

use moat_store::{Credential, NewCredential, NewMailboxItem, OtpRecord, Store, StoreError};
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
        .put_enrollment_otp(otp.clone(), item("o-m", "inst:o", 700), 100)
        .await
        .expect("put");
    assert_eq!(store.record_otp_failure("o1").await.expect("fail"), 1);
    let got = store
        .enrollment_otp("inst:o", "d")
        .await
        .expect("get")
        .expect("some");
    assert_eq!(got.attempts, 1);
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
            item("o-m2", "inst:o", 700),
            300,
        )
        .await
        .expect("put");
    for n in 1..=5 {
        assert_eq!(store.record_otp_failure("o2").await.expect("fail"), n);
    }
    assert!(
        !store.consume_otp("o2", 301, 5).await.expect("locked"),
        "locked after 5"
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
    let report = store.cleanup(100, 500).await.expect("cleanup");
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
            .cleanup(100, 1500)
            .await
            .expect("cleanup")
            .dormant_devices,
        0
    );
}

macro_rules! conformance {
    ($make:expr) => {
        #[tokio::test]
        async fn issue_rotate_revoke() {
            let (store, _guard) = $make;
            super::issue_rotate_revoke(&*store).await;
        }
        #[tokio::test]
        async fn mailbox_once_expiry_and_cap() {
            let (store, _guard) = $make;
            super::mailbox_once_expiry_and_cap(&*store).await;
        }
        #[tokio::test]
        async fn otp_attempts_and_single_use() {
            let (store, _guard) = $make;
            super::otp_attempts_and_single_use(&*store).await;
        }
        #[tokio::test]
        async fn cleanup_removes_what_it_should() {
            let (store, _guard) = $make;
            super::cleanup_removes_what_it_should(&*store).await;
        }
    };
}

mod sqlite {
    use moat_store::sqlite::{SqliteOptions, SqliteStore};

    async fn make() -> (Box<dyn moat_store::Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/moat.db", dir.path().display());
        let store = SqliteStore::open(&url, &SqliteOptions::default())
            .await
            .expect("open");
        (Box::new(store), dir)
    }

    conformance!(make().await);
}
