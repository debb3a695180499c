//! The Consul coordinator's tokens: `<prefix>/tokens/<accessor>`, the record as JSON. An
//! accessor is 16 hex digits (checked before it becomes part of a key). Not here: any decision
//! about tokens.

use trough_auth::token::valid_accessor;
use trough_auth::TokenRecord;
use trough_types::error::{Error, Result};

use super::ConsulCoordinator;

fn key(c: &ConsulCoordinator, accessor: &str) -> Option<String> {
    valid_accessor(accessor).then(|| c.key(&format!("tokens/{accessor}")))
}

pub(super) async fn create(c: &ConsulCoordinator, token: &TokenRecord) -> Result<()> {
    let k = key(c, &token.accessor)
        .ok_or_else(|| Error::internal(format!("invalid accessor {:?}", token.accessor)))?;
    let body = serde_json::to_vec(token)?;
    if c.client.kv_put(&k, body, Some(0)).await? {
        return Ok(());
    }
    match get(c, &token.accessor).await? {
        Some(existing) => crate::token_conflict(&existing, token),
        // Deleted in between: the caller may try again.
        None => Err(Error::unavailable(
            trough_types::error::codes::VERSION_RACE,
            "the token changed while it was being created; retry",
        )),
    }
}

pub(super) async fn get(c: &ConsulCoordinator, accessor: &str) -> Result<Option<TokenRecord>> {
    let Some(k) = key(c, accessor) else {
        return Ok(None);
    };
    match c.client.kv_get(&k).await? {
        Some(p) => Ok(Some(serde_json::from_slice(&p.value)?)),
        None => Ok(None),
    }
}

pub(super) async fn list(c: &ConsulCoordinator) -> Result<Vec<TokenRecord>> {
    let dir = c.key("tokens/");
    let mut out: Vec<TokenRecord> = c
        .client
        .kv_list(&dir)
        .await?
        .iter()
        .map(|p| Ok(serde_json::from_slice(&p.value)?))
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.accessor.cmp(&b.accessor));
    Ok(out)
}

pub(super) async fn delete(c: &ConsulCoordinator, accessor: &str) -> Result<bool> {
    let Some(k) = key(c, accessor) else {
        return Ok(false);
    };
    match c.client.kv_get(&k).await? {
        Some(p) => c.client.kv_delete(&k, p.modify_index).await,
        None => Ok(false),
    }
}
