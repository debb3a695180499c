//! The retention and garbage-collection worker: every `retention.interval_secs`, on the one
//! node that takes the `gc` lock, removes the versions the retention policy expires
//! ([`trough_store::retention`]) and runs one round of the garbage collector
//! ([`trough_store::gc`]). It runs on sync-server nodes (every `trough serve`); the lock keeps
//! two of them from collecting at once. A round that fails is logged and tried again at the
//! next interval: every step can run again. Not here: the policy or the collector themselves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use trough_config::RetentionConfig;
use trough_placement::{TierMatcher, TierRule};

use trough_coord::Coordinator;
use trough_store::retention::Policy;
use trough_store::SegmentStore;
use trough_types::{NodeName, SegmentId};
use trough_worker::{async_trait, Worker, WorkerState};

/// The lock only one collector holds at a time.
pub const GC_LOCK_KEY: &str = "gc";

/// Which retention rules apply to a segment: its tier's (`retention.tiers.<tier>`, the tier
/// from `assignment.tier_rules`) if that tier has an entry, else the global ones.
#[derive(Clone, Debug)]
pub struct Policies {
    global: Policy,
    tiers: BTreeMap<String, Policy>,
    matcher: TierMatcher,
}

impl Policies {
    /// The rules of `config` with segments mapped to tiers by `rules`.
    pub fn new(
        config: &RetentionConfig,
        rules: &[TierRule],
    ) -> Result<Self, trough_placement::PatternError> {
        let policy = |keep_last, keep_for: Option<u64>| Policy {
            keep_last,
            keep_for: keep_for.map(Duration::from_secs),
        };
        Ok(Self {
            global: policy(config.keep_last, config.keep_for_secs),
            tiers: config
                .tiers
                .iter()
                .map(|(name, t)| (name.clone(), policy(t.keep_last, t.keep_for_secs)))
                .collect(),
            matcher: TierMatcher::new(rules)?,
        })
    }

    /// The rules for `id`. Pure.
    pub fn policy_for(&self, id: &SegmentId) -> Policy {
        self.tiers
            .get(self.matcher.tier_for(id))
            .copied()
            .unwrap_or(self.global)
    }
}

/// See the module docs.
pub(crate) struct RetentionWorker {
    pub(crate) name: NodeName,
    pub(crate) store: SegmentStore,
    pub(crate) coordinator: Arc<dyn Coordinator>,
    pub(crate) policies: Policies,
    pub(crate) grace: Duration,
    pub(crate) interval: Duration,
}

impl RetentionWorker {
    async fn round(&self) -> trough_types::Result<()> {
        let Some(_lease) = self.coordinator.try_lock(GC_LOCK_KEY, &self.name).await? else {
            return Ok(());
        };
        let result = async {
            let now = chrono::Utc::now();
            let removed = trough_store::retention::run(
                &self.store,
                &self.coordinator,
                &|id| self.policies.policy_for(id),
                now,
            )
            .await?;
            let report =
                trough_store::gc::collect(&self.store, &self.coordinator, self.grace, now).await?;
            tracing::info!(
                removed_versions = removed,
                ?report,
                "retention and garbage collection round"
            );
            Ok(())
        }
        .await;
        let _ = self.coordinator.unlock(GC_LOCK_KEY, &self.name).await;
        result
    }
}

#[async_trait]
impl Worker for RetentionWorker {
    fn name(&self) -> &'static str {
        "retention"
    }

    // The first round waits an interval: a restart does not list the whole store at once.
    fn starts_idle(&self) -> bool {
        true
    }

    async fn work(&mut self) -> WorkerState {
        if let Err(e) = self.round().await {
            tracing::warn!(error = %e, "retention and garbage collection round failed; retrying at the next interval");
        }
        WorkerState::Idle
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trough_config::TierRetention;

    #[test]
    fn a_tier_entry_replaces_the_global_rules_for_that_tier_only() {
        let config = RetentionConfig {
            keep_last: Some(10),
            keep_for_secs: Some(60),
            tiers: BTreeMap::from([(
                "hot".to_owned(),
                TierRetention {
                    keep_last: Some(2),
                    keep_for_secs: None,
                },
            )]),
            ..RetentionConfig::default()
        };
        let rules = [TierRule {
            pattern: "hot-*".into(),
            tier: "hot".into(),
        }];
        let p = Policies::new(&config, &rules).unwrap();
        let id = |s: &str| SegmentId::new(s).unwrap();
        assert_eq!(
            p.policy_for(&id("hot-1")),
            Policy {
                keep_last: Some(2),
                keep_for: None
            }
        );
        assert_eq!(
            p.policy_for(&id("cold-1")),
            Policy {
                keep_last: Some(10),
                keep_for: Some(Duration::from_secs(60))
            }
        );
    }
}
