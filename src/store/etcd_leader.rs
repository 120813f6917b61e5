//! Leader election among `sectl serve` replicas on one etcd (`--store etcd://...`).
//!
//! The leader holds the key `<prefix>leader` (`{"holder": replica id, "since": RFC
//! 3339, "address": its API's URL}`; `address` is absent when not known), created with a Txn that requires the key to be absent and bound to an etcd
//! lease of `--lease-ttl` that the leader keeps alive. When the leader dies or stalls,
//! etcd drops the key when the lease runs out and a waiting replica creates it.
//!
//! Fencing: once a replica leads, every write of its store is a Txn that also compares
//! the leader key's lease with this replica's; a leader that was stopped (SIGSTOP) past
//! its TTL and resumes writes nothing, and its keep-alive finds the lease gone and
//! calls `on_lost` (serve then exits; a supervisor starts it again as a standby).
//!
//! The election uses the store's own etcd connection, so it goes over TLS with the
//! same files when the store does (`etcds://`, see `etcd_tls`): no second connection.

use super::etcd::EtcdStore;
use super::{Result, StoreError};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The leader key, under the store's prefix.
pub const LEADER_KEY: &str = "leader";

/// Who leads and since when (`sectl get leader -o json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderInfo {
    /// The leader's replica id.
    pub holder: String,
    /// When it became leader (RFC 3339, real time).
    pub since: String,
}

/// The leader key's value: `LeaderInfo` and where the leader serves its API (a
/// standby names it in the answers it leaves to the leader). `LeaderInfo` alone is
/// what `sectl get leader` shows, as `../shared/API.md` fixes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// Holder and since.
    #[serde(flatten)]
    pub info: LeaderInfo,
    /// The leader's API URL (`https://HOST:PORT`), if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// This replica leads.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// What the leader key says.
    pub info: LeaderInfo,
    /// The etcd lease that holds it.
    pub lease: i64,
}

fn be(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {err}"))
}

impl EtcdStore {
    /// Waits until this replica leads, then fences every later write of this store on
    /// the leadership. `address` (this replica's API URL) goes into the leader key for
    /// the standbys to name. `on_lost` runs (once, on the store's runtime) when the lease
    /// can no longer be kept alive for a whole TTL or has expired.
    pub fn campaign(
        &self,
        replica_id: &str,
        address: Option<String>,
        ttl: Duration,
        on_lost: impl FnOnce(String) + Send + 'static,
    ) -> Result<Leadership> {
        let ttl_s = (ttl.as_secs() as i64).max(1);
        let e = self.e.clone();
        let id = replica_id.to_string();
        let won = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(AtomicBool::new(false));
        let (won2, dead2) = (won.clone(), dead.clone());
        let lease = self.block(async move {
            let mut client = e.client.clone();
            let lease = client.lease_grant(ttl_s, None).await.map_err(be)?.id();
            tokio::spawn(keep_alive(client, lease, ttl_s, won2, dead2, on_lost));
            Ok::<_, StoreError>(lease)
        })??;
        let e = self.e.clone();
        let dead2 = dead.clone();
        let info = self.block(async move {
            let key = e.key(LEADER_KEY);
            let mut told = String::new();
            loop {
                if dead2.load(Ordering::SeqCst) {
                    return Err(be("the election lease expired while waiting"));
                }
                let info = LeaderInfo { holder: id.clone(), since: super::now_rfc3339() };
                let record = LeaderRecord { info: info.clone(), address: address.clone() };
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key.clone(),
                        serde_json::to_vec(&record).map_err(be)?,
                        Some(PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(key.clone(), None)]);
                let r = e.client.kv_client().txn(txn).await.map_err(be)?;
                if r.succeeded() {
                    return Ok(info);
                }
                if let Some(TxnOpResponse::Get(g)) = r.op_responses().first() {
                    let now = g.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                    if let Some(now) = now.filter(|n| *n != told) {
                        tracing::info!(leader = %now, "standing by: another replica leads");
                        told = now;
                    }
                }
                tokio::time::sleep(Duration::from_millis(((ttl_s * 1000) / 20).clamp(50, 250) as u64)).await;
            }
        })??;
        won.store(true, Ordering::SeqCst);
        self.e.fence.store(lease, Ordering::SeqCst);
        Ok(Leadership { info, lease })
    }

    /// Who leads now, if anyone.
    pub fn leader(&self) -> Result<Option<LeaderInfo>> {
        Ok(self.leader_record()?.map(|r| r.info))
    }

    /// Who leads now and where it serves its API, if anyone leads.
    pub fn leader_record(&self) -> Result<Option<LeaderRecord>> {
        let e = self.e.clone();
        let got = self
            .block(async move {
                e.client
                    .kv_client()
                    .get(e.key(LEADER_KEY), None)
                    .await
                    .map(|r| r.kvs().first().map(|kv| kv.value().to_vec()))
            })?
            .map_err(be)?;
        got.map(|v| serde_json::from_slice(&v).map_err(be)).transpose()
    }

    /// Whether the leader key is still held by `lease`.
    pub(super) fn still_leads(&self, lease: i64) -> Result<bool> {
        let e = self.e.clone();
        let got = self
            .block(async move {
                e.client.kv_client().get(e.key(LEADER_KEY), None).await.map(|r| r.kvs().first().map(|kv| kv.lease()))
            })?
            .map_err(be)?;
        Ok(got == Some(lease))
    }
}

/// Keeps the election lease alive; calls `on_lost` once it is gone (after winning).
async fn keep_alive(
    mut client: etcd_client::Client,
    lease: i64,
    ttl_s: i64,
    won: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    on_lost: impl FnOnce(String) + Send + 'static,
) {
    let ttl = Duration::from_secs(ttl_s as u64);
    let mut last_ok = Instant::now();
    let why = loop {
        if last_ok.elapsed() >= ttl {
            break format!("the leader lease could not be renewed for {ttl:?}");
        }
        let renewed = async {
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            Ok::<_, etcd_client::Error>(stream.message().await?.map(|r| r.ttl()))
        };
        match tokio::time::timeout(ttl / 3, renewed).await {
            Ok(Ok(Some(left))) if left > 0 => last_ok = Instant::now(),
            Ok(Ok(_)) => break "the leader lease expired (this replica was stopped or cut off too long)".to_string(),
            _ => {}
        }
        tokio::time::sleep(ttl / 3).await;
    };
    dead.store(true, Ordering::SeqCst);
    if won.load(Ordering::SeqCst) {
        on_lost(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_info_is_holder_and_since_in_json() {
        let i = LeaderInfo { holder: "a:1".into(), since: "2026-01-01T00:00:00Z".into() };
        assert_eq!(
            serde_json::to_value(&i).unwrap(),
            serde_json::json!({"holder": "a:1", "since": "2026-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn the_record_adds_the_address_and_reads_keys_without_one() {
        let info = LeaderInfo { holder: "a:1".into(), since: "2026-01-01T00:00:00Z".into() };
        let r = LeaderRecord { info: info.clone(), address: Some("https://10.0.0.1:8443".into()) };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["address"], "https://10.0.0.1:8443");
        assert_eq!(serde_json::from_value::<LeaderInfo>(v).unwrap(), info);
        let old: LeaderRecord = serde_json::from_str(r#"{"holder":"a:1","since":"2026-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(old, LeaderRecord { info, address: None });
    }
}
