//! The embedded coordinator's dataset management: deleting a segment, removing old versions
//! (retention), and each segment's description and labels ([`SegmentInfo`], one row per segment
//! in the `segment_info` table, read from the file on every call like tokens: listings that
//! filter by label are rare next to catalog reads). Not here: deciding what to delete.

use std::collections::BTreeMap;

use rusqlite::params;
use trough_types::error::{codes, Error, Result};
use trough_types::id::SegmentId;
use trough_types::manifest::SegmentEntry;

use super::{db_error, rd, wr, Db, EmbeddedCoordinator};
use crate::SegmentInfo;

const INFO_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS segment_info (id TEXT PRIMARY KEY, doc TEXT NOT NULL)";

fn ensure_table(db: &mut Db) -> Result<()> {
    db.exec(INFO_TABLE, [])?;
    Ok(())
}

pub(super) async fn delete_segment(
    c: &EmbeddedCoordinator,
    id: &SegmentId,
) -> Result<Option<SegmentEntry>> {
    let id = id.clone();
    c.write(move |db, cell| {
        let Some(entry) = rd(cell).catalog.get(&id).cloned() else {
            return Ok((None, None));
        };
        if let Some(w) = &entry.writable {
            return Err(Error::conflict(
                codes::SEGMENT_WRITABLE,
                format!(
                    "{id} is writable on node {}; its writer must release it",
                    w.writer
                ),
            ));
        }
        ensure_table(db)?;
        db.transaction(|db| {
            for sql in [
                "DELETE FROM versions WHERE id = ?1",
                "DELETE FROM writable WHERE id = ?1",
                "DELETE FROM assigned WHERE id = ?1",
                "DELETE FROM segment_info WHERE id = ?1",
                "DELETE FROM segments WHERE id = ?1",
            ] {
                db.exec(sql, [id.as_str()])?;
            }
            Ok(())
        })?;
        let mut mem = wr(cell);
        mem.catalog.remove(&id);
        mem.assignment.remove(&id);
        Ok((Some(entry), Some(vec![id.clone()])))
    })
    .await
}

pub(super) async fn remove_versions(
    c: &EmbeddedCoordinator,
    id: &SegmentId,
    versions: &[u64],
) -> Result<Option<SegmentEntry>> {
    let (id, versions) = (id.clone(), versions.to_vec());
    c.write(move |db, cell| {
        let Some(entry) = rd(cell).catalog.get(&id).cloned() else {
            return Ok((None, None));
        };
        let gone: Vec<u64> = entry
            .versions
            .iter()
            .map(|m| m.version)
            .filter(|v| versions.contains(v))
            .collect();
        if gone.is_empty() {
            return Ok((Some(entry), None));
        }
        db.transaction(|db| {
            for v in &gone {
                db.exec(
                    "DELETE FROM versions WHERE id = ?1 AND version = ?2",
                    params![id.as_str(), *v as i64],
                )?;
            }
            Ok(())
        })?;
        let mut mem = wr(cell);
        let e = mem.catalog.get_mut(&id).expect("checked under the db lock");
        e.versions.retain(|m| !gone.contains(&m.version));
        Ok((Some(e.clone()), Some(vec![id.clone()])))
    })
    .await
}

pub(super) async fn get_info(c: &EmbeddedCoordinator, id: &SegmentId) -> Result<SegmentInfo> {
    let id = id.clone();
    c.query(move |db| {
        ensure_table(db)?;
        let doc: Option<String> =
            db.one("SELECT doc FROM segment_info WHERE id = ?1", [id.as_str()])?;
        Ok(doc
            .map(|d| serde_json::from_str(&d))
            .transpose()?
            .unwrap_or_default())
    })
    .await
}

pub(super) async fn set_info(
    c: &EmbeddedCoordinator,
    id: &SegmentId,
    info: &SegmentInfo,
) -> Result<()> {
    let (id, doc) = (id.clone(), serde_json::to_string(info)?);
    let empty = info.is_empty();
    c.write(move |db, cell| {
        if !rd(cell).catalog.contains_key(&id) {
            return Err(Error::not_found(
                codes::SEGMENT_NOT_FOUND,
                format!("segment {id} not found"),
            ));
        }
        ensure_table(db)?;
        if empty {
            db.exec("DELETE FROM segment_info WHERE id = ?1", [id.as_str()])?;
        } else {
            db.exec(
                "INSERT INTO segment_info (id, doc) VALUES (?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                params![id.as_str(), doc],
            )?;
        }
        Ok(((), Some(vec![id.clone()])))
    })
    .await
}

pub(super) async fn list_info(c: &EmbeddedCoordinator) -> Result<BTreeMap<SegmentId, SegmentInfo>> {
    c.query(|db| {
        ensure_table(db)?;
        db.statements += 1;
        let rows: Vec<(String, String)> = db
            .conn
            .prepare_cached("SELECT id, doc FROM segment_info ORDER BY id")
            .map_err(db_error)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_error)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, doc)| Ok((SegmentId::new(&id)?, serde_json::from_str(&doc)?)))
            .collect()
    })
    .await
}
