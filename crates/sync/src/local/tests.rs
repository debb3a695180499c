use super::*;

fn sid(s: &str) -> SegmentId {
    SegmentId::new(s).unwrap()
}
fn node(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}
fn entry(id: &str, versions: &[u64]) -> SegmentEntry {
    SegmentEntry {
        id: sid(id),
        versions: versions
            .iter()
            .map(|&v| Manifest {
                id: sid(id),
                version: v,
                sha256: format!("sha{v}"),
                size: 1,
                created_at: Utc::now(),
                schema: None,
                writable: false,
                key: String::new(),
            })
            .collect(),
        writable: None,
    }
}

#[test]
fn fetches_missing_and_stale_copies() {
    let me = node("n1");
    let catalog: BTreeMap<_, _> = [entry("a", &[1]), entry("b", &[1, 2]), entry("c", &[3])]
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    let assignment: AssignmentMap = [
        (sid("a"), vec![me.clone()]),
        (sid("b"), vec![me.clone()]),
        (sid("c"), vec![me.clone()]),
    ]
    .into_iter()
    .collect();
    // a: missing; b: stale v1; c: held but unverified.
    let held: BTreeMap<_, _> = [(sid("b"), (1, true)), (sid("c"), (3, false))]
        .into_iter()
        .collect();
    let actions = plan(&me, &assignment, &catalog, &held, &BTreeMap::new());
    let fetched: Vec<_> = actions
        .iter()
        .map(|a| match a {
            Action::Fetch(m) => (m.id.to_string(), m.version),
            Action::Drop(_) => panic!("nothing to drop"),
        })
        .collect();
    assert_eq!(fetched, [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
    // Once everything is held verified, nothing to do.
    let held: BTreeMap<_, _> = [
        (sid("a"), (1, true)),
        (sid("b"), (2, true)),
        (sid("c"), (3, true)),
    ]
    .into_iter()
    .collect();
    assert!(plan(&me, &assignment, &catalog, &held, &BTreeMap::new()).is_empty());
}

#[test]
fn drops_only_after_replacement_holds_latest() {
    let me = node("n1");
    let other = node("n2");
    let catalog: BTreeMap<_, _> = [entry("a", &[1, 2])]
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    let assignment: AssignmentMap = [(sid("a"), vec![other.clone()])].into_iter().collect();
    let held: BTreeMap<_, _> = [(sid("a"), (2, true))].into_iter().collect();
    // n2 holds nothing yet: keep ours.
    assert!(plan(&me, &assignment, &catalog, &held, &BTreeMap::new()).is_empty());
    // n2 holds an old version: keep ours.
    let mut holders: BTreeMap<SegmentId, BTreeMap<NodeName, u64>> = BTreeMap::new();
    holders
        .entry(sid("a"))
        .or_default()
        .insert(other.clone(), 1);
    assert!(plan(&me, &assignment, &catalog, &held, &holders).is_empty());
    // n2 holds the latest: drop ours.
    holders.entry(sid("a")).or_default().insert(other, 2);
    assert_eq!(
        plan(&me, &assignment, &catalog, &held, &holders),
        [Action::Drop(sid("a"))]
    );
    // A segment gone from the catalog is dropped at once.
    let held: BTreeMap<_, _> = [(sid("gone"), (1, true))].into_iter().collect();
    assert_eq!(
        plan(&me, &assignment, &catalog, &held, &BTreeMap::new()),
        [Action::Drop(sid("gone"))]
    );
}

#[test]
fn a_copy_of_the_latest_version_number_with_other_bytes_is_stale() {
    // Deleted and published again: version 1 again, other bytes.
    let e = entry("a", &[1]);
    let copy = |sha: &str| CopyState {
        version: 1,
        sha256: sha.into(),
        size: 1,
        verified: true,
        error: None,
    };
    assert_eq!(held_as(&copy("sha1"), Some(&e)), (1, true));
    assert_eq!(held_as(&copy("old-bytes"), Some(&e)), (1, false));
    assert_eq!(held_as(&copy("old-bytes"), None), (1, true));
    let mut assignment = AssignmentMap::new();
    assignment.insert(sid("a"), vec![node("n1")]);
    let catalog = BTreeMap::from([(sid("a"), e.clone())]);
    let held = BTreeMap::from([(sid("a"), held_as(&copy("old-bytes"), Some(&e)))]);
    let actions = plan(&node("n1"), &assignment, &catalog, &held, &BTreeMap::new());
    assert_eq!(actions, vec![Action::Fetch(e.versions[0].clone())]);
}
