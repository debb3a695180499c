//! The embedded coordinator's tokens: one row per token in the `tokens` table of its SQLite
//! file (`accessor` → the record as JSON). Read from the file on every call, not cached in
//! memory: tokens are looked up by accessor (a primary-key read), and the node's own cache in
//! `trough_api::auth` keeps that off the request path. Not here: any decision about tokens.

use rusqlite::params;
use trough_auth::TokenRecord;
use trough_types::error::Result;

use super::{db_error, EmbeddedCoordinator};

pub(super) async fn create(c: &EmbeddedCoordinator, token: &TokenRecord) -> Result<()> {
    let token = token.clone();
    let doc = serde_json::to_string(&token)?;
    c.query(move |db| {
        db.transaction(|db| {
            let existing: Option<String> = db.one(
                "SELECT doc FROM tokens WHERE accessor = ?1",
                [token.accessor.as_str()],
            )?;
            if let Some(existing) = existing {
                return crate::token_conflict(&serde_json::from_str(&existing)?, &token);
            }
            db.exec(
                "INSERT INTO tokens (accessor, doc) VALUES (?1, ?2)",
                params![token.accessor.as_str(), doc],
            )?;
            Ok(())
        })
    })
    .await
}

pub(super) async fn get(c: &EmbeddedCoordinator, accessor: &str) -> Result<Option<TokenRecord>> {
    let accessor = accessor.to_owned();
    c.query(move |db| {
        let doc: Option<String> =
            db.one("SELECT doc FROM tokens WHERE accessor = ?1", [accessor])?;
        Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
    })
    .await
}

pub(super) async fn list(c: &EmbeddedCoordinator) -> Result<Vec<TokenRecord>> {
    c.query(|db| {
        db.statements += 1;
        let docs: Vec<String> = db
            .conn
            .prepare_cached("SELECT doc FROM tokens ORDER BY accessor")
            .map_err(db_error)?
            .query_map([], |r| r.get(0))
            .map_err(db_error)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_error)?;
        docs.iter().map(|d| Ok(serde_json::from_str(d)?)).collect()
    })
    .await
}

pub(super) async fn delete(c: &EmbeddedCoordinator, accessor: &str) -> Result<bool> {
    let accessor = accessor.to_owned();
    c.query(move |db| Ok(db.exec("DELETE FROM tokens WHERE accessor = ?1", [accessor])? > 0))
        .await
}
