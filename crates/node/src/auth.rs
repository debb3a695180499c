//! Start-up of authentication: the settings the API's gate runs with, the refusal to serve an
//! open node on a non-loopback address, and the bootstrap admin token.
//!
//! Not here: checking requests (`trough_api::auth`), the grant rules (`trough_auth`).

use std::net::{IpAddr, SocketAddr};

use trough_api::auth::AuthSettings;
use trough_auth::{ClusterRight, Scope, Secret, TokenRecord};
use trough_config::{AuthConfig, Config};
use trough_coord::Coordinator;
use trough_types::error::codes;
use trough_types::{Error, Result};

/// The API's settings from the configuration (anonymous grants parsed and checked).
pub fn settings(config: &AuthConfig) -> Result<AuthSettings> {
    let anonymous =
        if config.anonymous.is_empty() {
            None
        } else {
            Some(Scope::parse_items(&config.anonymous).map_err(|e| {
                Error::invalid(codes::INVALID_CONFIG, format!("auth.anonymous: {e}"))
            })?)
        };
    Ok(AuthSettings {
        enabled: config.enabled,
        anonymous,
        cache_ttl: config.cache_ttl(),
    })
}

/// Whether `listen` is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    if let Ok(ip) = listen.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

/// Refuses to serve without authorization on a non-loopback address unless told `insecure`.
pub fn check_exposure(config: &Config) -> Result<()> {
    if config.auth.enabled || config.auth.insecure || is_loopback(&config.listen) {
        return Ok(());
    }
    Err(Error::invalid(
        codes::INVALID_CONFIG,
        format!(
            "refusing to listen on {} with authorization off: anyone who can reach it could read \
             and change every segment. Turn on auth.enabled (see docs/security.md), listen on a \
             loopback address, or pass --insecure (auth.insecure) to accept that",
            config.listen
        ),
    ))
}

/// The listener's TLS configuration (`None`: plain HTTP) and the forwarder for requests to other
/// nodes (trusting `tls.ca_file`, presenting this node's certificate when clients must have one).
pub fn tls(
    config: &trough_config::TlsConfig,
) -> Result<(
    Option<std::sync::Arc<rustls::ServerConfig>>,
    trough_cluster::forward::Forwarder,
)> {
    use trough_api::listener::tls::{server_config, TlsFiles};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| {
            Error::invalid(
                codes::INVALID_CONFIG,
                format!("TLS file {}: {e}", p.display()),
            )
        })
    };
    let server = match (&config.cert_file, &config.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(server_config(&TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.client_ca_file.clone(),
        })?),
        _ => {
            return Err(Error::invalid(
                codes::INVALID_CONFIG,
                "tls.cert_file and tls.key_file go together",
            ))
        }
    };
    let ca = config.ca_file.as_deref().map(read).transpose()?;
    let identity = match (&config.client_ca_file, &config.cert_file, &config.key_file) {
        (Some(_), Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            Some(pem)
        }
        _ => None,
    };
    let forwarder =
        trough_cluster::forward::Forwarder::with_tls(ca.as_deref(), identity.as_deref()).map_err(
            |e| Error::invalid(codes::INVALID_CONFIG, format!("TLS for forwarding: {e}")),
        )?;
    Ok((server, forwarder))
}

/// Everything: admin on every segment and every cluster right.
pub fn admin_scope() -> Scope {
    Scope::parse_items(&["admin:*", "status", "metrics", "tokens"]).expect("static grants")
}

/// The bootstrap secret given by the configuration, if any.
fn configured_secret(config: &AuthConfig) -> Result<Option<Secret>> {
    let raw = match (&config.bootstrap_token_file, &config.bootstrap_token) {
        (Some(path), _) => Some(std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(
                codes::INVALID_CONFIG,
                format!("auth.bootstrap_token_file {}: {e}", path.display()),
            )
        })?),
        (None, Some(s)) => Some(s.clone()),
        (None, None) => None,
    };
    raw.map(|s| {
        Secret::parse(s.trim()).ok_or_else(|| {
            Error::invalid(
                codes::INVALID_CONFIG,
                "the bootstrap token must look like trough_<16 hex digits>_<at least 32 letters \
                 or digits> (its value is not shown)",
            )
        })
    })
    .transpose()
}

/// What the bootstrap did.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Authorization is off, or tokens exist already: nothing.
    Nothing,
    /// The configured token is stored (or already was).
    Configured,
    /// A new admin token was created; its secret is to be shown once.
    Created(Secret),
}

/// With authorization on: stores the configured bootstrap token, or, when no token exists at
/// all, creates an admin token whose secret the caller prints once.
pub async fn bootstrap(config: &AuthConfig, coordinator: &dyn Coordinator) -> Result<Bootstrap> {
    if !config.enabled {
        return Ok(Bootstrap::Nothing);
    }
    let now = chrono::Utc::now();
    let record = |s: &Secret| {
        TokenRecord::new(
            s,
            "bootstrap admin token",
            now,
            None,
            "bootstrap",
            admin_scope(),
        )
    };
    if let Some(secret) = configured_secret(config)? {
        coordinator.create_token(&record(&secret)).await?;
        return Ok(Bootstrap::Configured);
    }
    if !coordinator.list_tokens().await?.is_empty() {
        return Ok(Bootstrap::Nothing);
    }
    let mut random = [0u8; trough_auth::token::RANDOM_BYTES];
    getrandom::fill(&mut random).map_err(|e| Error::internal(e.to_string()))?;
    let secret = Secret::from_random(&random);
    coordinator.create_token(&record(&secret)).await?;
    debug_assert!(admin_scope().has(ClusterRight::Tokens));
    Ok(Bootstrap::Created(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for l in [
            "127.0.0.1:6444",
            "127.1.2.3:0",
            "[::1]:80",
            "localhost:6444",
        ] {
            assert!(is_loopback(l), "{l}");
        }
        for l in ["0.0.0.0:6444", "10.0.0.5:1", "[::]:80", "example.org:80"] {
            assert!(!is_loopback(l), "{l}");
        }
    }

    #[test]
    fn open_nodes_stay_on_loopback_unless_insecure() {
        let mut c = Config {
            listen: "0.0.0.0:6444".into(),
            ..Config::default()
        };
        assert!(check_exposure(&c).is_err());
        c.auth.insecure = true;
        assert!(check_exposure(&c).is_ok());
        c.auth.insecure = false;
        c.auth.enabled = true;
        assert!(check_exposure(&c).is_ok());
    }

    #[tokio::test]
    async fn bootstrap_creates_one_admin_token_or_stores_the_configured_one() {
        let c = trough_coord::embedded::EmbeddedCoordinator::in_memory().unwrap();
        let mut cfg = AuthConfig::default();
        assert_eq!(bootstrap(&cfg, &c).await.unwrap(), Bootstrap::Nothing);
        cfg.enabled = true;
        let Bootstrap::Created(secret) = bootstrap(&cfg, &c).await.unwrap() else {
            panic!("no token created")
        };
        let stored = c.get_token(secret.accessor()).await.unwrap().unwrap();
        assert_eq!(stored.scope, admin_scope());
        assert_eq!(bootstrap(&cfg, &c).await.unwrap(), Bootstrap::Nothing);
        let given = Secret::from_random(&[3; trough_auth::token::RANDOM_BYTES]);
        cfg.bootstrap_token = Some(given.expose().to_owned());
        assert_eq!(bootstrap(&cfg, &c).await.unwrap(), Bootstrap::Configured);
        assert_eq!(bootstrap(&cfg, &c).await.unwrap(), Bootstrap::Configured);
        assert_eq!(c.list_tokens().await.unwrap().len(), 2);
        cfg.bootstrap_token = Some("not-a-token".into());
        let err = bootstrap(&cfg, &c).await.unwrap_err();
        assert!(!err.message().contains("not-a-token"));
    }
}
