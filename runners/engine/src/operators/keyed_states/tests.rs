//! Tests of the keyed states of a stateful ParDo: spilling, timers, checkpoints.

use super::*;
use crate::checkpoint::StateOut;

fn layout() -> Layout {
    Layout {
        decls: vec![("n".into(), StateKind::Value(Coder::VarInt))],
        key_coder: Coder::VarInt,
        name: "Count".into(),
    }
}

fn id(k: i64) -> StateId {
    (
        Coder::VarInt.encode_to_vec(&Value::I64(k)).unwrap(),
        Window::Global,
    )
}

/// Adds one to key `k`'s count, with an event-time timer at `10 * k`.
fn bump(s: &mut KeyedStates, k: i64, lay: &Layout) {
    let e = s
        .entry(&id(k), lay, || Ok((Value::I64(k), Vec::new())))
        .unwrap();
    let n = match e.cells.first() {
        Some(StateCell::Value(Value::I64(n))) => *n,
        _ => 0,
    };
    e.cells = vec![StateCell::Value(Value::I64(n + 1))];
    s.set_timer(
        &id(k),
        "t".into(),
        Some((TimeDomain::Watermark, 10 * k, 10 * k)),
    );
    s.used(&id(k), lay).unwrap();
}

fn count(s: &mut KeyedStates, k: i64, lay: &Layout) -> i64 {
    let e = s
        .entry(&id(k), lay, || Ok((Value::Null, Vec::new())))
        .unwrap();
    match e.cells.first() {
        Some(StateCell::Value(Value::I64(n))) => *n,
        _ => 0,
    }
}

fn spilling(dir: &std::path::Path, bytes: usize) -> KeyedStates {
    let mut s = KeyedStates::default();
    s.limit(StateBudget {
        bytes,
        dir: dir.to_path_buf(),
    });
    s
}

#[test]
fn states_and_timers_spill_read_back_and_fire_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let lay = layout();
    let mut s = spilling(dir.path(), 4_000);
    for round in 0..3 {
        for k in (0..200).rev() {
            bump(&mut s, k, &lay);
        }
        assert!(
            s.hot.len() < 100,
            "round {round}: {} in memory",
            s.hot.len()
        );
    }
    assert_eq!(
        s.first_event_timer(),
        0,
        "the earliest timer is a spilled one"
    );
    for k in 0..200 {
        assert_eq!(count(&mut s, k, &lay), 3, "key {k}");
    }
    let mut fired = Vec::new();
    while let Some((got, name, out)) = s.pop_timer(TimeDomain::Watermark, 1_000, &lay).unwrap() {
        let Value::I64(k) = lay.decode_key(&got.0).unwrap() else {
            panic!("not a key")
        };
        assert_eq!((name.as_str(), out), ("t", 10 * k));
        fired.push(out);
    }
    assert_eq!(fired, (0..=100).map(|k| 10 * k).collect::<Vec<_>>());
    assert_eq!(s.first_event_timer(), 1_010);
    let mut m = MetricsContainer::default();
    s.report(&mut m);
    // Everything was removed when due, spilled or not.
    let ids = s.due(|_| true, usize::MAX).unwrap();
    assert_eq!(ids.len(), 200);
    for i in &ids {
        s.remove(i, &lay).unwrap();
    }
    assert!(s.due(|_| true, usize::MAX).unwrap().is_empty());
    assert_eq!(s.first_event_timer(), END_OF_TIME);
}

/// A snapshot's entries as the checkpoint's writer lists them (`None`: a delete).
fn listed(out: &StateOut) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let mut entries = BTreeMap::new();
    out.for_each_entry(|e| {
        let (k, v) = match e {
            crate::checkpoint::Entry::Put(k, v) => (k, Some(v.to_vec())),
            crate::checkpoint::Entry::Delete(k) => (k, None),
        };
        assert!(entries.insert(k.to_vec(), v).is_none(), "listed once");
        Ok(())
    })
    .unwrap();
    entries
}

#[test]
fn checkpoints_hold_spilled_states_and_restore_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let lay = layout();
    let mut s = spilling(dir.path(), 1);
    s.track_changes();
    for k in 0..50 {
        bump(&mut s, k, &lay);
    }
    assert!(
        s.hot.is_empty(),
        "a budget of one byte keeps nothing in memory"
    );
    let mut full = StateOut::new(1, true);
    s.snapshot(&mut full, &lay).unwrap();
    // The spilled states are listed later (by the checkpoint's writer).
    assert_eq!(full.puts.len(), 0);
    // Changed since: one bumped, one removed, the rest spilled again.
    bump(&mut s, 7, &lay);
    s.remove(&id(9), &lay).unwrap();
    for k in 10..20 {
        bump(&mut s, k, &lay);
    }
    for k in 10..20 {
        bump(&mut s, k, &lay);
        s.remove(&id(k), &lay).unwrap();
        bump(&mut s, k, &lay);
    }
    // The full snapshot lists the states as they were when it was taken.
    let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = listed(&full)
        .into_iter()
        .map(|(k, v)| (k, v.expect("a full checkpoint has no deletes")))
        .collect();
    assert_eq!(entries.len(), 50);
    for (key, bytes) in &entries {
        let (cells, _) = decode_cells(&lay.decls, bytes, "Count").unwrap();
        assert!(
            matches!(cells.as_slice(), [StateCell::Value(Value::I64(1))]),
            "{key:?}"
        );
    }
    let mut inc = StateOut::new(2, false);
    s.snapshot(&mut inc, &lay).unwrap();
    // Changed again before the writer lists them: it lists them as they were.
    bump(&mut s, 7, &lay);
    bump(&mut s, 9, &lay);
    let changes = listed(&inc);
    assert_eq!(changes.len(), 12);
    assert!(changes[&state_key(&id(7).0, &id(7).1)].is_some());
    assert_eq!(changes[&state_key(&id(9).0, &id(9).1)], None, "a delete");
    // Restored into a small budget: spilled again, read back equal.
    for (k, v) in changes {
        match v {
            Some(v) => entries.insert(k, v),
            None => entries.remove(&k),
        };
    }
    let mut r = spilling(dir.path(), 1);
    for (key, bytes) in entries {
        let (kb, w) = super::super::pardo_codec::decode_state_key(&key, "Count").unwrap();
        let (cells, timers) = decode_cells(&lay.decls, &bytes, "Count").unwrap();
        let value = lay.decode_key(&kb).unwrap();
        r.restore((kb, w), value, cells, timers, &lay).unwrap();
    }
    assert!(r.hot.is_empty());
    assert_eq!(count(&mut r, 7, &lay), 2);
    assert_eq!(count(&mut r, 8, &lay), 1);
    assert_eq!(count(&mut r, 12, &lay), 1, "removed, then counted once");
    assert_eq!(r.first_event_timer(), 0);
    assert!(r.drop_all_if_due(|_| true));
}

#[test]
fn the_end_drops_spilled_states_without_reading_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let lay = layout();
    let mut s = spilling(dir.path(), 1);
    for k in 0..20 {
        bump(&mut s, k, &lay);
    }
    assert!(!s.drop_all_if_due(|w| *w != Window::Global));
    assert!(s.drop_all_if_due(|_| true));
    assert_eq!(s.first_event_timer(), END_OF_TIME);
    assert!(s.due(|_| true, 10).unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "store deleted"
    );
}

#[test]
fn with_checkpoints_the_end_drops_every_state_and_the_next_snapshot_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let lay = layout();
    let mut s = spilling(dir.path(), 1);
    s.track_changes();
    for k in 0..20 {
        bump(&mut s, k, &lay);
    }
    assert!(!s.needs_whole_snapshot());
    // Not one removal to track: the next snapshot saves the (empty) whole instead.
    assert!(s.drop_all_if_due(|_| true));
    assert!(s.needs_whole_snapshot());
    let mut out = StateOut::new(2, false);
    if s.needs_whole_snapshot() {
        out.replace_all();
    }
    s.snapshot(&mut out, &lay).unwrap();
    assert!(out.full() && out.puts.is_empty() && out.deletes.is_empty());
    assert!(!s.needs_whole_snapshot(), "changes are tracked again");
}
