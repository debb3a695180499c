//! The Consul coordinator's dataset management: deleting a segment (`<prefix>/catalog/<id>`
//! deleted with check-and-set, so a concurrent provision or publish is never lost silently: the
//! delete starts over from a fresh read), removing old versions (the same read-modify-write as
//! every catalog change), and descriptions and labels (`<prefix>/info/<id>`, the
//! [`SegmentInfo`] as JSON). Not here: deciding what to delete.

use std::collections::BTreeMap;

use backon::Retryable;
use trough_types::error::{codes, Error, Result};
use trough_types::id::SegmentId;
use trough_types::manifest::SegmentEntry;

use super::{assignment_bucket_key, Cas, ConsulCoordinator, Update, CAS_BACKOFF};
use crate::{AssignmentMap, SegmentInfo};

fn info_key(c: &ConsulCoordinator, id: &SegmentId) -> String {
    c.key(&format!("info/{id}"))
}

/// One round of a delete: `Ok(None)` when the segment is unknown, `Err(Cas::Lost)` when the
/// entry changed between the read and the delete.
async fn delete_round(
    c: &ConsulCoordinator,
    id: &SegmentId,
) -> std::result::Result<Option<SegmentEntry>, Cas> {
    let key = c.catalog_key(id);
    let Some(cur) = c.client.kv_get(&key).await.map_err(Cas::Failed)? else {
        return Ok(None);
    };
    let entry = ConsulCoordinator::parse_entry(&key, &cur.value).map_err(Cas::Failed)?;
    if let Some(w) = &entry.writable {
        return Err(Cas::Failed(Error::conflict(
            codes::SEGMENT_WRITABLE,
            format!(
                "{id} is writable on node {}; its writer must release it",
                w.writer
            ),
        )));
    }
    if c.client
        .kv_delete(&key, cur.modify_index)
        .await
        .map_err(Cas::Failed)?
    {
        Ok(Some(entry))
    } else {
        Err(Cas::Lost)
    }
}

pub(super) async fn delete_segment(
    c: &ConsulCoordinator,
    id: &SegmentId,
) -> Result<Option<SegmentEntry>> {
    let round = || delete_round(c, id);
    let removed = match round
        .retry(CAS_BACKOFF)
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, Cas::Lost))
        .await
    {
        Ok(r) => r,
        Err(Cas::Failed(e)) => return Err(e),
        Err(Cas::Lost) => {
            return Err(Error::unavailable(
                "catalog_contended",
                format!("{id}: too many concurrent catalog updates, try again"),
            ))
        }
    };
    if removed.is_some() {
        // The rest is tidying: the leader drops the assignment of a segment that left the
        // catalog anyway, and an info record without its entry is never shown.
        remove_assignment(c, id).await?;
        if let Some(p) = c.client.kv_get(&info_key(c, id)).await? {
            c.client.kv_delete(&info_key(c, id), p.modify_index).await?;
        }
    }
    Ok(removed)
}

/// Removes `id` from its assignment bucket (check-and-set; a lost race is left to the leader,
/// which drops segments that left the catalog).
async fn remove_assignment(c: &ConsulCoordinator, id: &SegmentId) -> Result<()> {
    let key = c.key(&assignment_bucket_key(id));
    let Some(p) = c.client.kv_get(&key).await? else {
        return Ok(());
    };
    let mut bucket: AssignmentMap = serde_json::from_slice(&p.value)?;
    if bucket.remove(id).is_some() {
        c.client
            .kv_put(&key, serde_json::to_vec(&bucket)?, Some(p.modify_index))
            .await?;
    }
    Ok(())
}

pub(super) async fn remove_versions(
    c: &ConsulCoordinator,
    id: &SegmentId,
    versions: &[u64],
) -> Result<Option<SegmentEntry>> {
    if c.client.kv_get(&c.catalog_key(id)).await?.is_none() {
        return Ok(None);
    }
    let e = c
        .update_entry(id, |cur| {
            let Some(mut e) = cur else {
                return Err(Error::not_found(
                    codes::SEGMENT_NOT_FOUND,
                    format!("segment {id} not found"),
                ));
            };
            let before = e.versions.len();
            e.versions.retain(|m| !versions.contains(&m.version));
            Ok(if e.versions.len() == before {
                Update::Unchanged(e)
            } else {
                Update::Write(e)
            })
        })
        .await;
    match e {
        Ok(e) => Ok(Some(e)),
        // Deleted in between.
        Err(e) if e.code() == codes::SEGMENT_NOT_FOUND => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) async fn get_info(c: &ConsulCoordinator, id: &SegmentId) -> Result<SegmentInfo> {
    match c.client.kv_get(&info_key(c, id)).await? {
        Some(p) => Ok(serde_json::from_slice(&p.value)?),
        None => Ok(SegmentInfo::default()),
    }
}

pub(super) async fn set_info(
    c: &ConsulCoordinator,
    id: &SegmentId,
    info: &SegmentInfo,
) -> Result<()> {
    if c.client.kv_get(&c.catalog_key(id)).await?.is_none() {
        return Err(Error::not_found(
            codes::SEGMENT_NOT_FOUND,
            format!("segment {id} not found"),
        ));
    }
    let key = info_key(c, id);
    if info.is_empty() {
        if let Some(p) = c.client.kv_get(&key).await? {
            c.client.kv_delete(&key, p.modify_index).await?;
        }
        return Ok(());
    }
    c.client
        .kv_put(&key, serde_json::to_vec(info)?, None)
        .await?;
    Ok(())
}

pub(super) async fn list_info(c: &ConsulCoordinator) -> Result<BTreeMap<SegmentId, SegmentInfo>> {
    let dir = c.key("info/");
    let mut out = BTreeMap::new();
    for p in c.client.kv_list(&dir).await? {
        let Some(id) = p.key.strip_prefix(&dir) else {
            continue;
        };
        out.insert(SegmentId::new(id)?, serde_json::from_slice(&p.value)?);
    }
    Ok(out)
}
