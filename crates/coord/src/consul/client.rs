//! A small typed client for the parts of Consul's HTTP API that trough uses.
//!
//! Only what [`super::ConsulCoordinator`] needs: KV (get, list, keys with blocking queries,
//! check-and-set, acquire/release), sessions (create, renew, destroy, info), the local agent's
//! service registry (register, deregister, TTL check pass) and `/v1/health/service` with blocking
//! queries. Built on the workspace's `reqwest` (rustls, hyper 1); see
//! `docs/decisions/0005-consul-client.md` for why this is not a third-party Consul crate.
//!
//! Every call has a timeout. Blocking queries get `wait` plus Consul's jitter (up to `wait/16`)
//! plus the normal request timeout. Errors map to trough's vocabulary: an unreachable or failing
//! Consul is [`ErrorKind::Unavailable`]; an answer we cannot understand is `Internal`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use url::Url;

use trough_types::error::{Error, ErrorKind, Result};

/// Consul refuses to block longer than this; longer waits are capped.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(600);

/// One KV entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KvPair {
    /// The full key.
    pub key: String,
    /// The decoded value (empty when Consul stores none).
    pub value: Vec<u8>,
    /// Raft index of the last write: the token for `?cas=`.
    pub modify_index: u64,
    /// The session holding the key as a lock, if any.
    pub session: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawKv {
    key: String,
    value: Option<String>,
    modify_index: u64,
    session: Option<String>,
}

/// `PUT /v1/session/create` body.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SessionSpec {
    pub name: String,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub lock_delay: String,
    pub behavior: String,
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

/// `PUT /v1/agent/service/register` body (the subset we use).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub check: TtlCheck,
}

/// A TTL check attached to a service registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TtlCheck {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub status: String,
    pub deregister_critical_service_after: String,
}

/// One instance from `/v1/health/service/<name>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthEntry {
    pub service: ServiceInstance,
}

/// The service part of a health entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceInstance {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
}

/// Formats a duration the way Consul (Go's `time.ParseDuration`) reads it.
pub(crate) fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The typed Consul HTTP client. Cheap to clone (one shared connection pool).
#[derive(Clone, Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    timeout: Duration,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable("consul_unavailable", format!("consul {what}: {e}"))
}

impl Client {
    /// A client for the agent at `url` (e.g. `http://127.0.0.1:8500`).
    pub fn new(
        url: &str,
        token: Option<String>,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self> {
        let mut base = Url::parse(url).map_err(|e| {
            Error::invalid("invalid_consul_url", format!("consul url {url:?}: {e}"))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(Error::invalid(
                "invalid_consul_url",
                format!("consul url {url:?}: expected http(s)://host:port"),
            ));
        }
        base.set_path("/");
        base.set_query(None);
        let mut builder = reqwest::Client::builder().connect_timeout(timeout);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::invalid("invalid_config", format!("consul CA: {e}")))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::internal(format!("building the consul http client: {e}")))?;
        Ok(Self {
            http,
            base,
            token,
            timeout,
        })
    }

    /// `base` + `/v1/<path>`. `path` components are validated names, safe in a URL path.
    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("/v1/{path}"));
        u
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let req = match &self.token {
            Some(t) => req.header("X-Consul-Token", t),
            None => req,
        };
        req.timeout(timeout)
            .send()
            .await
            .map_err(|e| unavailable(what, e))
    }

    /// Turns a non-success answer into an error carrying Consul's message.
    async fn fail(what: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let msg = format!("consul {what}: HTTP {status}: {}", body.trim());
        if status.is_server_error() || status.as_u16() == 429 {
            Error::unavailable("consul_unavailable", msg)
        } else {
            Error::new(ErrorKind::Internal, "consul_error", msg)
        }
    }

    async fn ok(&self, what: &str, resp: reqwest::Response) -> Result<reqwest::Response> {
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(Self::fail(what, resp).await)
        }
    }

    fn index_of(resp: &reqwest::Response) -> u64 {
        resp.headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Adds `index`/`wait` for a blocking query and returns the request timeout to use.
    fn blocking(&self, url: &mut Url, block: Option<(u64, Duration)>) -> Duration {
        match block {
            Some((index, wait)) if index > 0 && !wait.is_zero() => {
                let wait = wait.min(MAX_WAIT);
                url.query_pairs_mut()
                    .append_pair("index", &index.to_string())
                    .append_pair("wait", &go_duration(wait));
                wait + wait / 16 + self.timeout
            }
            _ => self.timeout,
        }
    }

    async fn decode_kvs(what: &str, resp: reqwest::Response) -> Result<Vec<KvPair>> {
        let raw: Vec<RawKv> = resp
            .json()
            .await
            .map_err(|e| unavailable(what, format!("bad answer: {e}")))?;
        raw.into_iter()
            .map(|r| {
                let value = match r.value {
                    Some(v) => base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|e| Error::internal(format!("consul {what}: bad base64: {e}")))?,
                    None => Vec::new(),
                };
                Ok(KvPair {
                    key: r.key,
                    value,
                    modify_index: r.modify_index,
                    session: r.session.filter(|s| !s.is_empty()),
                })
            })
            .collect()
    }

    // ----- status -----

    /// The current Raft leader's address (empty when there is none).
    pub async fn leader(&self) -> Result<String> {
        let resp = self
            .send(
                "leader",
                self.http.get(self.url("status/leader")),
                self.timeout,
            )
            .await?;
        let resp = self.ok("leader", resp).await?;
        resp.json::<String>()
            .await
            .map_err(|e| unavailable("leader", e))
    }

    // ----- KV -----

    /// One key, or `None`.
    pub async fn kv_get(&self, key: &str) -> Result<Option<KvPair>> {
        let what = "kv get";
        let resp = self
            .send(
                what,
                self.http.get(self.url(&format!("kv/{key}"))),
                self.timeout,
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.ok(what, resp).await?;
        Ok(Self::decode_kvs(what, resp).await?.into_iter().next())
    }

    /// Every key under `prefix` (which should end in `/`), sorted by key.
    pub async fn kv_list(&self, prefix: &str) -> Result<Vec<KvPair>> {
        let what = "kv list";
        let mut url = self.url(&format!("kv/{prefix}"));
        url.query_pairs_mut().append_key_only("recurse");
        let resp = self.send(what, self.http.get(url), self.timeout).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let resp = self.ok(what, resp).await?;
        Self::decode_kvs(what, resp).await
    }

    /// The index of the subtree under `prefix` (`?keys`, so no values travel). With `block`, a
    /// blocking query: returns once the index exceeds `block.0` or after `block.1`.
    pub async fn kv_index(&self, prefix: &str, block: Option<(u64, Duration)>) -> Result<u64> {
        let what = "kv keys";
        let mut url = self.url(&format!("kv/{prefix}"));
        url.query_pairs_mut().append_key_only("keys");
        let timeout = self.blocking(&mut url, block);
        let resp = self.send(what, self.http.get(url), timeout).await?;
        if resp.status() != reqwest::StatusCode::NOT_FOUND && !resp.status().is_success() {
            return Err(Self::fail(what, resp).await);
        }
        Ok(Self::index_of(&resp))
    }

    /// Writes a key. With `cas`, only if its `ModifyIndex` still is `cas` (0: only if absent).
    /// Returns whether the write happened.
    pub async fn kv_put(&self, key: &str, value: Vec<u8>, cas: Option<u64>) -> Result<bool> {
        let mut url = self.url(&format!("kv/{key}"));
        if let Some(c) = cas {
            url.query_pairs_mut().append_pair("cas", &c.to_string());
        }
        self.kv_write("kv put", url, value).await
    }

    /// `?acquire=<session>`: takes the key as a lock (or refreshes it, for the same session).
    pub async fn kv_acquire(&self, key: &str, value: Vec<u8>, session: &str) -> Result<bool> {
        let mut url = self.url(&format!("kv/{key}"));
        url.query_pairs_mut().append_pair("acquire", session);
        self.kv_write("kv acquire", url, value).await
    }

    /// `?release=<session>`: gives the lock up (the value is replaced by `value`).
    pub async fn kv_release(&self, key: &str, value: Vec<u8>, session: &str) -> Result<bool> {
        let mut url = self.url(&format!("kv/{key}"));
        url.query_pairs_mut().append_pair("release", session);
        self.kv_write("kv release", url, value).await
    }

    /// Deletes a key if its `ModifyIndex` still is `cas`. Returns whether it was deleted.
    pub async fn kv_delete(&self, key: &str, cas: u64) -> Result<bool> {
        let mut url = self.url(&format!("kv/{key}"));
        url.query_pairs_mut().append_pair("cas", &cas.to_string());
        self.kv_answer("kv delete", self.http.delete(url)).await
    }

    async fn kv_write(&self, what: &str, url: Url, value: Vec<u8>) -> Result<bool> {
        self.kv_answer(what, self.http.put(url).body(value)).await
    }

    /// Sends a KV write and reads Consul's `true` / `false`.
    async fn kv_answer(&self, what: &str, req: reqwest::RequestBuilder) -> Result<bool> {
        let resp = self.send(what, req, self.timeout).await?;
        let resp = self.ok(what, resp).await?;
        let text = resp.text().await.map_err(|e| unavailable(what, e))?;
        match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(Error::internal(format!(
                "consul {what}: unexpected answer {other:?}"
            ))),
        }
    }

    // ----- sessions -----

    /// Creates a session on the agent's node; returns its id.
    pub async fn session_create(&self, spec: &SessionSpec) -> Result<String> {
        let what = "session create";
        let resp = self
            .send(
                what,
                self.http.put(self.url("session/create")).json(spec),
                self.timeout,
            )
            .await?;
        let resp = self.ok(what, resp).await?;
        Ok(resp
            .json::<Created>()
            .await
            .map_err(|e| unavailable(what, e))?
            .id)
    }

    /// Renews a session. `Ok(false)` when Consul no longer knows it (invalidated).
    pub async fn session_renew(&self, id: &str, timeout: Duration) -> Result<bool> {
        let what = "session renew";
        let resp = self
            .send(
                what,
                self.http.put(self.url(&format!("session/renew/{id}"))),
                timeout,
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let resp = self.ok(what, resp).await?;
        // Consul 1.8 answers 200 with an empty list for some unknown sessions.
        let body: serde_json::Value = resp.json().await.map_err(|e| unavailable(what, e))?;
        Ok(body.as_array().is_none_or(|a| !a.is_empty()))
    }

    /// Destroys a session (releasing or deleting its locks, per its behavior).
    pub async fn session_destroy(&self, id: &str) -> Result<()> {
        let what = "session destroy";
        let resp = self
            .send(
                what,
                self.http.put(self.url(&format!("session/destroy/{id}"))),
                self.timeout,
            )
            .await?;
        self.ok(what, resp).await.map(drop)
    }

    // ----- agent services and checks -----

    /// Registers (or replaces) a service on the local agent.
    pub async fn service_register(&self, reg: &ServiceRegistration) -> Result<()> {
        let what = "service register";
        let resp = self
            .send(
                what,
                self.http.put(self.url("agent/service/register")).json(reg),
                self.timeout,
            )
            .await?;
        self.ok(what, resp).await.map(drop)
    }

    /// Removes a service from the local agent (absent services are fine).
    pub async fn service_deregister(&self, id: &str) -> Result<()> {
        let what = "service deregister";
        let resp = self
            .send(
                what,
                self.http
                    .put(self.url(&format!("agent/service/deregister/{id}"))),
                self.timeout,
            )
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        // Consul 1.8 answers 500 "Unknown service" for services it does not have.
        if resp.status().is_server_error() {
            let body = resp.text().await.unwrap_or_default();
            if body.contains("Unknown service") {
                return Ok(());
            }
            return Err(Error::unavailable(
                "consul_unavailable",
                format!("consul {what}: {}", body.trim()),
            ));
        }
        self.ok(what, resp).await.map(drop)
    }

    /// Marks a TTL check passing. `Ok(false)` when the agent does not know the check (it was
    /// restarted, or reaped the service): the caller registers again.
    pub async fn check_pass(&self, check_id: &str) -> Result<bool> {
        let what = "check pass";
        let resp = self
            .send(
                what,
                self.http
                    .put(self.url(&format!("agent/check/pass/{check_id}"))),
                self.timeout,
            )
            .await?;
        if resp.status().is_success() {
            return Ok(true);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND
            || body.contains("Unknown check")
            || body.contains("does not have associated TTL")
        {
            return Ok(false);
        }
        Err(Error::unavailable(
            "consul_unavailable",
            format!("consul {what}: HTTP {status}: {}", body.trim()),
        ))
    }

    /// Instances of `service` (only those whose checks all pass, with `passing`) and the index.
    /// With `block`, a blocking query.
    pub async fn health_service(
        &self,
        service: &str,
        passing: bool,
        block: Option<(u64, Duration)>,
    ) -> Result<(Vec<HealthEntry>, u64)> {
        let what = "health service";
        let mut url = self.url(&format!("health/service/{service}"));
        if passing {
            url.query_pairs_mut().append_key_only("passing");
        }
        let timeout = self.blocking(&mut url, block);
        let resp = self.send(what, self.http.get(url), timeout).await?;
        let resp = self.ok(what, resp).await?;
        let index = Self::index_of(&resp);
        let entries = resp
            .json::<Option<Vec<HealthEntry>>>()
            .await
            .map_err(|e| unavailable(what, format!("bad answer: {e}")))?
            .unwrap_or_default();
        Ok((entries, index))
    }

    /// The health index of `service` only (the body is read and dropped).
    pub async fn health_index(&self, service: &str, block: Option<(u64, Duration)>) -> Result<u64> {
        let what = "health service";
        let mut url = self.url(&format!("health/service/{service}"));
        let timeout = self.blocking(&mut url, block);
        let resp = self.send(what, self.http.get(url), timeout).await?;
        let resp = self.ok(what, resp).await?;
        let index = Self::index_of(&resp);
        // Drain the body so the connection goes back to the pool.
        let _ = resp.bytes().await;
        Ok(index)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn durations_are_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10000ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::ZERO), "1ms");
    }

    #[test]
    fn urls_keep_only_scheme_and_authority() {
        let c = Client::new(
            "http://127.0.0.1:8500/ui?x=1",
            None,
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert_eq!(
            c.url("kv/trough/catalog/a").as_str(),
            "http://127.0.0.1:8500/v1/kv/trough/catalog/a"
        );
        assert!(Client::new("127.0.0.1:8500", None, Duration::from_secs(1), None).is_err());
        assert!(Client::new("ftp://x", None, Duration::from_secs(1), None).is_err());
    }
}
