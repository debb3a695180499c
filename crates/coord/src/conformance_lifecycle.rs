//! The conformance checks of dataset management ([`Coordinator::delete_segment`],
//! [`Coordinator::remove_versions`], descriptions and labels), run by [`super::conformance::run_all`]
//! for every backend.

use std::collections::BTreeMap;

use chrono::Utc;

use super::conformance::{manifest, node, sid};
use super::{AssignmentMap, Coordinator, SegmentInfo};
use trough_types::error::{codes, ErrorKind};
use trough_types::manifest::WritableInfo;

/// Delete: the entry, its assignment and its info go; unknown ids are `None`; a writable
/// segment is refused and kept; the id can be recorded again from version 1; watchers wake.
pub async fn delete(c: &dyn Coordinator) {
    assert!(c.delete_segment(&sid("del-none")).await.unwrap().is_none());
    c.add_version(&manifest("del-a", 1, "a1")).await.unwrap();
    c.add_version(&manifest("del-a", 2, "a2")).await.unwrap();
    c.add_version(&manifest("del-b", 1, "b1")).await.unwrap();
    let mut a = AssignmentMap::new();
    a.insert(sid("del-a"), vec![node("n1")]);
    a.insert(sid("del-b"), vec![node("n1")]);
    c.update_assignment(&a, &[]).await.unwrap();
    let info = SegmentInfo {
        description: Some("to go".into()),
        labels: BTreeMap::from([("team".into(), "x".into())]),
    };
    c.set_segment_info(&sid("del-a"), &info).await.unwrap();

    let before = c
        .wait_for_change(0, std::time::Duration::ZERO)
        .await
        .unwrap();
    let gone = c.delete_segment(&sid("del-a")).await.unwrap().unwrap();
    assert_eq!(gone.versions.len(), 2);
    assert!(c.get_segment(&sid("del-a")).await.unwrap().is_none());
    assert!(c.get_assigned(&sid("del-a")).await.unwrap().is_empty());
    assert_eq!(
        c.get_assigned(&sid("del-b")).await.unwrap(),
        vec![node("n1")]
    );
    assert!(c.get_segment_info(&sid("del-a")).await.unwrap().is_empty());
    assert!(!c
        .list_segments()
        .await
        .unwrap()
        .iter()
        .any(|e| e.id == sid("del-a")));
    let after = c
        .wait_for_change(before, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(after > before, "a delete wakes watchers");
    assert!(c.delete_segment(&sid("del-a")).await.unwrap().is_none());

    // Published again: a fresh entry.
    let e = c.add_version(&manifest("del-a", 1, "new")).await.unwrap();
    assert_eq!(e.versions.len(), 1);
    assert_eq!(e.versions[0].sha256, "new");

    // Writable: refused, nothing changes.
    let w = WritableInfo {
        writer: node("w1"),
        schema: None,
        provisioned_at: Utc::now(),
    };
    c.set_writable(&sid("del-w"), Some(w)).await.unwrap();
    let err = c.delete_segment(&sid("del-w")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.code(), codes::SEGMENT_WRITABLE);
    assert!(c.get_segment(&sid("del-w")).await.unwrap().is_some());
    c.set_writable(&sid("del-w"), None).await.unwrap();
    assert!(c.delete_segment(&sid("del-w")).await.unwrap().is_some());
}

/// Retention: named versions leave the entry, others stay, unknown ones are ignored.
pub async fn remove_versions(c: &dyn Coordinator) {
    assert!(c
        .remove_versions(&sid("rv-none"), &[1])
        .await
        .unwrap()
        .is_none());
    for v in 1..=4 {
        c.add_version(&manifest("rv-a", v, &format!("s{v}")))
            .await
            .unwrap();
    }
    let e = c
        .remove_versions(&sid("rv-a"), &[1, 3, 9])
        .await
        .unwrap()
        .unwrap();
    let left: Vec<u64> = e.versions.iter().map(|m| m.version).collect();
    assert_eq!(left, [2, 4]);
    let got = c.get_segment(&sid("rv-a")).await.unwrap().unwrap();
    assert_eq!(got.versions, e.versions);
    // Nothing to remove: unchanged.
    let same = c
        .remove_versions(&sid("rv-a"), &[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.versions, e.versions);
}

/// Descriptions and labels: set, replaced, cleared, listed; unknown segments refused.
pub async fn info(c: &dyn Coordinator) {
    assert!(c.get_segment_info(&sid("inf-a")).await.unwrap().is_empty());
    let info = SegmentInfo {
        description: Some("pages of 2026".into()),
        labels: BTreeMap::from([
            ("crawl".into(), "2026-11".into()),
            ("team".into(), "web".into()),
        ]),
    };
    let err = c.set_segment_info(&sid("inf-a"), &info).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    c.add_version(&manifest("inf-a", 1, "i1")).await.unwrap();
    c.add_version(&manifest("inf-b", 1, "i2")).await.unwrap();
    c.set_segment_info(&sid("inf-a"), &info).await.unwrap();
    assert_eq!(c.get_segment_info(&sid("inf-a")).await.unwrap(), info);
    let listed = c.list_segment_info().await.unwrap();
    assert_eq!(listed.get(&sid("inf-a")), Some(&info));
    assert!(!listed.contains_key(&sid("inf-b")));
    let replaced = SegmentInfo {
        description: None,
        labels: BTreeMap::from([("team".into(), "data".into())]),
    };
    c.set_segment_info(&sid("inf-a"), &replaced).await.unwrap();
    assert_eq!(c.get_segment_info(&sid("inf-a")).await.unwrap(), replaced);
    c.set_segment_info(&sid("inf-a"), &SegmentInfo::default())
        .await
        .unwrap();
    assert!(c.get_segment_info(&sid("inf-a")).await.unwrap().is_empty());
    assert!(!c
        .list_segment_info()
        .await
        .unwrap()
        .contains_key(&sid("inf-a")));
}
