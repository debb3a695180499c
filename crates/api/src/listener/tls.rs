//! TLS for the listener (rustls): the server's certificate and key from PEM files, reloaded when
//! the files change, and optional client certificates checked against a CA.
//!
//! Reloading: the certificate resolver looks at the files' modification times at most once per
//! [`RELOAD_CHECK`] during handshakes and loads them again when they changed; a pair that does
//! not load (a half-written file, a key that does not match) is logged and the previous one is
//! kept, so a renewal never takes the node down. Not here: the HTTP side of a connection
//! ([`super`]), trusting other nodes' certificates when forwarding (`trough_cluster::forward`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use trough_types::error::codes;
use trough_types::Error;

/// How often, at most, the certificate files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Where the listener's TLS material is.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
}

fn invalid(message: String) -> Error {
    Error::invalid(codes::INVALID_CONFIG, message)
}

/// The crypto provider every TLS object of trough uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("TLS certificate file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "TLS certificate file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| invalid(format!("TLS key file {}: {e}", files.key.display())))?;
    let ck = CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| invalid(format!("TLS certificate and key: {e}")))?;
    Ok(ck)
}

fn mtimes(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert), m(&files.key))
}

/// The server certificate, reloaded when its files change.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    key: Arc<CertifiedKey>,
    seen: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl Reloading {
    fn current(&self) -> Arc<CertifiedKey> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() >= RELOAD_CHECK {
            s.checked = Instant::now();
            let now = mtimes(&self.files);
            if now != s.seen {
                match load_key(&self.files, &self.provider) {
                    Ok(k) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                        s.key = Arc::new(k);
                        s.seen = now;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "TLS certificate files changed but do not load; keeping the previous ones"
                    ),
                }
            }
        }
        s.key.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server configuration for `files` (HTTP/1.1 only).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let key = load_key(files, &provider)?;
    let resolver = Arc::new(Reloading {
        files: files.clone(),
        provider: provider.clone(),
        state: Mutex::new(State {
            key: Arc::new(key),
            seen: mtimes(files),
            checked: Instant::now(),
        }),
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| invalid(format!("TLS client CA {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(format!("TLS client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
