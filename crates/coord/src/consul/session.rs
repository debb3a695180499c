//! Locks on one Consul session per coordinator, renewed in the background, with fencing.
//!
//! The session is created on the first [`Locks::try_lock`] (readers that never lock never create
//! one). A background task renews it every `TTL/3`. The task flips every [`Lease`] of the session
//! to lost as soon as either
//!
//! - a renew answers 404 (Consul invalidated the session: destroyed, or its node failed), or
//! - no renew has succeeded for `TTL/2`, counted from the moment the last successful renew was
//!   *sent* (the renew may have been processed later, never earlier),
//!
//! and then forgets the session (destroying it, best effort), so the next `try_lock` creates a
//! new one. Leases of the old session stay lost. Why `TTL/2` fences in time is argued in the
//! parent module's documentation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{go_duration, Client, SessionSpec};
use crate::Lease;
use trough_types::error::{Error, Result};
use trough_types::id::NodeName;

/// How soon a failed renew is retried (bounded by the fencing deadline).
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// How long session creation waits for a just-started agent's `serfHealth` check.
const STARTUP_GRACE: Duration = Duration::from_secs(10);

struct HeldLease {
    holder: NodeName,
    session: String,
    lost: watch::Sender<bool>,
}

struct ActiveSession {
    id: String,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    session: Option<ActiveSession>,
    /// Lock key (full KV path) → the lease this process holds on it.
    leases: HashMap<String, HeldLease>,
}

/// Session and lease bookkeeping of one coordinator.
pub(crate) struct Locks {
    client: Client,
    name: String,
    ttl: Duration,
    lock_delay: Duration,
    state: Mutex<State>,
    /// Serializes lock operations of this process: holders in one process share one session,
    /// so Consul cannot tell them apart; the read-check-acquire sequence must not interleave.
    ops: tokio::sync::Mutex<()>,
}

impl Locks {
    pub fn new(client: Client, node: &NodeName, ttl: Duration, lock_delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            client,
            name: format!("trough:{node}"),
            ttl,
            lock_delay,
            state: Mutex::new(State::default()),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current session's id, if one is active.
    pub fn session_id(&self) -> Option<String> {
        self.state().session.as_ref().map(|s| s.id.clone())
    }

    /// The active session, created (with its renew task) if there is none.
    async fn ensure_session(self: &Arc<Self>) -> Result<String> {
        if let Some(id) = self.session_id() {
            return Ok(id);
        }
        let spec = SessionSpec {
            name: self.name.clone(),
            ttl: go_duration(self.ttl),
            lock_delay: go_duration(self.lock_delay),
            behavior: "release".into(),
        };
        // Right after an agent starts (or a cluster elects its first leader), the leader may not
        // have registered the agent node's `serfHealth` check yet, and Consul refuses sessions
        // tied to it for a moment. Retry that one transient answer briefly.
        let give_up = Instant::now() + STARTUP_GRACE;
        let create = || async {
            let sent = Instant::now();
            self.client.session_create(&spec).await.map(|id| (id, sent))
        };
        let (id, sent) = create
            .retry(
                ConstantBuilder::new()
                    .with_delay(Duration::from_millis(200))
                    .without_max_times(),
            )
            .sleep(tokio::time::sleep)
            .when(|e| e.message().contains("Missing check") && Instant::now() < give_up)
            .notify(|e, _| tracing::debug!(error = %e, "consul agent not ready for sessions yet"))
            .await?;
        let task = tokio::spawn(renew_loop(
            Arc::downgrade(self),
            self.client.clone(),
            id.clone(),
            self.ttl,
            sent,
        ));
        tracing::debug!(session = %id, "consul session created");
        self.state().session = Some(ActiveSession {
            id: id.clone(),
            task,
        });
        Ok(id)
    }

    /// Marks session `id` lost: flips its leases, forgets it. Returns whether it was current.
    fn session_lost(&self, id: &str, why: &str) -> bool {
        let mut st = self.state();
        let current = st.session.as_ref().is_some_and(|s| s.id == id);
        if current {
            // Dropping the handle detaches the task (it may be the caller); it exits by itself.
            st.session = None;
        }
        st.leases.retain(|key, l| {
            if l.session == id {
                tracing::warn!(lock = %key, holder = %l.holder, reason = why, "lease lost");
                l.lost.send_replace(true);
                false
            } else {
                true
            }
        });
        current
    }

    /// A [`Lease`] for `key` held by `holder` under `session`, sharing the watch of an existing
    /// lease of the same holder. Already lost if the session is no longer current.
    fn lease(&self, path: &str, key: &str, holder: &NodeName, session: &str) -> Lease {
        let mut st = self.state();
        let alive = st.session.as_ref().is_some_and(|s| s.id == session);
        let lost = if !alive {
            watch::channel(true).1
        } else {
            match st.leases.get(path) {
                Some(l) if l.holder == *holder && l.session == session => l.lost.subscribe(),
                _ => {
                    let (tx, rx) = watch::channel(false);
                    st.leases.insert(
                        path.to_owned(),
                        HeldLease {
                            holder: holder.clone(),
                            session: session.to_owned(),
                            lost: tx,
                        },
                    );
                    rx
                }
            }
        };
        Lease {
            key: key.to_owned(),
            holder: holder.clone(),
            lost,
        }
    }

    /// `try_lock`: see the parent module.
    pub async fn try_lock(
        self: &Arc<Self>,
        path: &str,
        key: &str,
        holder: &NodeName,
    ) -> Result<Option<Lease>> {
        let _ops = self.ops.lock().await;
        for attempt in 0..2 {
            let session = self.ensure_session().await?;
            if let Some(cur) = self.client.kv_get(path).await? {
                match cur.session.as_deref() {
                    Some(s) if s == session => {
                        return Ok((cur.value == holder.as_str().as_bytes())
                            .then(|| self.lease(path, key, holder, &session)));
                    }
                    Some(_) => return Ok(None),
                    None => {}
                }
            }
            match self
                .client
                .kv_acquire(path, holder.as_str().as_bytes().to_vec(), &session)
                .await
            {
                Ok(true) => return Ok(Some(self.lease(path, key, holder, &session))),
                Ok(false) => return Ok(None),
                // The session died between our check and the acquire: start over once with a
                // new one.
                Err(e) if attempt == 0 && e.message().contains("invalid session") => {
                    self.session_lost(&session, "invalid session on acquire");
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::unavailable(
            "consul_session_lost",
            "consul session was invalidated while acquiring a lock",
        ))
    }

    /// `unlock`: releases `path` if `holder` holds it through this process's session.
    pub async fn unlock(&self, path: &str, holder: &NodeName) -> Result<()> {
        let _ops = self.ops.lock().await;
        let Some(session) = self.session_id() else {
            return Ok(());
        };
        if let Some(cur) = self.client.kv_get(path).await? {
            if cur.session.as_deref() == Some(session.as_str())
                && cur.value == holder.as_str().as_bytes()
            {
                self.client.kv_release(path, Vec::new(), &session).await?;
            }
        }
        let mut st = self.state();
        if st
            .leases
            .get(path)
            .is_some_and(|l| l.holder == *holder && l.session == session)
        {
            if let Some(l) = st.leases.remove(path) {
                l.lost.send_replace(true);
            }
        }
        Ok(())
    }

    /// Stops renewing, flips every lease, and returns the session to destroy (if any).
    pub fn shutdown(&self) -> Option<String> {
        let mut st = self.state();
        let session = st.session.take();
        for (_, l) in st.leases.drain() {
            l.lost.send_replace(true);
        }
        session.map(|s| {
            s.task.abort();
            s.id
        })
    }
}

/// Renews session `id` every `ttl/3` until it is lost (see the module documentation).
async fn renew_loop(
    locks: Weak<Locks>,
    client: Client,
    id: String,
    ttl: Duration,
    created_sent: Instant,
) {
    let fence = ttl / 2;
    let every = ttl / 3;
    let mut last_ok = created_sent;
    let mut next = last_ok + every;
    let why = loop {
        let deadline = last_ok + fence;
        tokio::time::sleep_until(next.min(deadline)).await;
        if Instant::now() >= deadline {
            break "not renewed within TTL/2";
        }
        let sent = Instant::now();
        let remaining = deadline.saturating_duration_since(sent);
        match tokio::time::timeout(remaining, client.session_renew(&id, remaining)).await {
            Ok(Ok(true)) => {
                last_ok = sent;
                next = sent + every;
            }
            Ok(Ok(false)) => break "session invalidated by consul",
            Ok(Err(e)) => {
                tracing::warn!(session = %id, error = %e, "consul session renew failed; retrying");
                next = Instant::now() + RETRY_AFTER;
            }
            Err(_) => break "renew timed out past TTL/2",
        }
        if locks.strong_count() == 0 {
            return;
        }
    };
    let Some(locks) = locks.upgrade() else {
        return;
    };
    locks.session_lost(&id, why);
    drop(locks);
    // Best effort: a session we stopped trusting must not keep its locks until its TTL runs out.
    if why != "session invalidated by consul" {
        if let Err(e) = client.session_destroy(&id).await {
            tracing::debug!(session = %id, error = %e, "destroying a lost session failed");
        }
    }
}
