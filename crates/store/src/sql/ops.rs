//! [`OpsStore`] (the audit log and daily counters) in the shared SQL.

use async_trait::async_trait;
use uuid::Uuid;

use super::{Arg as _, SqlStore, execute_one, get, on};
use crate::ops::{
    AuditEvent, AuditQuery, MAX_AUDIT_PAGE, NewAuditEvent, OpsStore, StatDelta, StatRow,
};
use crate::{MAX_PAGE, Result};

#[async_trait]
impl<S: SqlStore> OpsStore for S {
    async fn append_audit(&self, events: &[NewAuditEvent]) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        for e in events {
            sqlx::query(
                "INSERT INTO audit_log (id, at, kind, actor, subject, ip, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .arg(Uuid::now_v7().to_string())
            .arg(e.at)
            .arg(&e.kind)
            .arg(&e.actor)
            .arg(&e.subject)
            .arg(&e.ip)
            .arg(&e.detail)
            .execute(on(&mut tx))
            .await
            .map_err(S::err)?;
        }
        tx.commit().await.map_err(S::err)?;
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        // One statement for every combination of filters: an absent filter is a NULL
        // parameter that makes its condition true (the CASTs give PostgreSQL the
        // parameter types).
        let rows = sqlx::query(
            "SELECT id, at, kind, actor, subject, ip, detail FROM audit_log \
             WHERE (CAST($1 AS TEXT) IS NULL OR kind = $1) \
             AND (CAST($2 AS TEXT) IS NULL OR subject = $2) \
             AND (CAST($3 AS BIGINT) IS NULL OR at >= $3) \
             AND (CAST($4 AS BIGINT) IS NULL OR at < $4) \
             AND (CAST($5 AS TEXT) IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
        )
        .arg(&q.kind)
        .arg(&q.subject)
        .arg(q.since)
        .arg(q.until)
        .arg(&q.before_id)
        .arg(i64::from(q.limit.min(MAX_AUDIT_PAGE)))
        .fetch_all(self.exec())
        .await
        .map_err(S::err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: get(r, "id")?,
                    event: NewAuditEvent {
                        at: get(r, "at")?,
                        kind: get(r, "kind")?,
                        actor: get(r, "actor")?,
                        subject: get(r, "subject")?,
                        ip: get(r, "ip")?,
                        detail: get(r, "detail")?,
                    },
                })
            })
            .collect()
    }

    async fn add_stats(&self, deltas: &[StatDelta]) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        for d in deltas {
            sqlx::query(
                "INSERT INTO daily_stats (day, metric, label, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (day, metric, label) DO UPDATE SET value = daily_stats.value + excluded.value",
            )
            .arg(d.day)
            .arg(&d.metric)
            .arg(&d.label)
            .arg(d.value)
            .execute(on(&mut tx))
            .await
            .map_err(S::err)?;
        }
        tx.commit().await.map_err(S::err)?;
        Ok(())
    }

    async fn stats(&self, metric: &str, from_day: i64, to_day: i64) -> Result<Vec<StatRow>> {
        let rows = sqlx::query(
            "SELECT day, metric, label, value FROM daily_stats \
             WHERE metric = $1 AND day >= $2 AND day <= $3 ORDER BY day, label LIMIT 10000",
        )
        .arg(metric)
        .arg(from_day)
        .arg(to_day)
        .fetch_all(self.exec())
        .await
        .map_err(S::err)?;
        rows.iter()
            .map(|r| {
                Ok(StatRow {
                    day: get(r, "day")?,
                    metric: get(r, "metric")?,
                    label: get(r, "label")?,
                    value: get(r, "value")?,
                })
            })
            .collect()
    }

    async fn top_stats(
        &self,
        metric: &str,
        from_day: i64,
        to_day: i64,
        limit: u32,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT label, CAST(SUM(value) AS BIGINT) AS total FROM daily_stats \
             WHERE metric = $1 AND day >= $2 AND day <= $3 \
             GROUP BY label ORDER BY total DESC, label LIMIT $4",
        )
        .arg(metric)
        .arg(from_day)
        .arg(to_day)
        .arg(i64::from(limit.min(MAX_PAGE)))
        .fetch_all(self.exec())
        .await
        .map_err(S::err)?;
        rows.iter()
            .map(|r| Ok((get(r, "label")?, get(r, "total")?)))
            .collect()
    }

    async fn mailbox_backlog(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM mailbox_items WHERE channel = 'builtin'",
        )
        .fetch_one(self.exec())
        .await
        .map_err(S::err)?;
        get(&row, "n")
    }

    async fn purge_ops(&self, audit_before: i64, stats_before_day: i64) -> Result<u64> {
        Ok(execute_one(
            self.pool(),
            "DELETE FROM audit_log WHERE at < $1",
            audit_before,
        )
        .await?
            + execute_one(
                self.pool(),
                "DELETE FROM daily_stats WHERE day < $1",
                stats_before_day,
            )
            .await?)
    }
}
