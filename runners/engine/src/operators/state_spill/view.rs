//! A spill store's states as they were at a moment, listed later as checkpoint entries
//! (on the checkpoint writer's thread, while the store goes on changing).

use super::{spill_err, state_of_row, Cold, StateId, STATES};
use crate::checkpoint::Entry;
use crate::element_codec::encode_window;
use crate::error::Result;
use redb::{Database, ReadableDatabase, ReadableTable};
use rustc_hash::FxHashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Views of the store.
impl Cold {
    /// Calls `f` with every state that is not stale and its encoding.
    ///
    /// # Errors
    /// The store cannot be read; what `f` returns.
    #[cfg(test)]
    pub(crate) fn for_each(&self, f: impl FnMut(StateId, &[u8]) -> Result<()>) -> Result<()> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let states = tx.open_table(STATES).map_err(|e| self.err(e))?;
        each_state(&states, &self.stale, &self.name, &self.path, f)
    }

    /// The states that are not stale as they are now, to be listed later (on another
    /// thread, while this store goes on changing) as checkpoint entries: all of them, or
    /// those of `only` (each put, or deleted when it is not here then).
    ///
    /// # Errors
    /// The store cannot be read.
    pub(crate) fn view(&self, entry: ColdEntry, only: Option<StateRows>) -> Result<ColdView> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        Ok(ColdView {
            states: tx.open_table(STATES).map_err(|e| self.err(e))?,
            _db: self.db.clone(),
            stale: self.stale.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
            entry,
            only,
        })
    }
}

/// States to look up, as their rows' keys one after another (each after its length): a
/// few bytes each, where a list of ids would take some 80.
#[derive(Debug, Default)]
pub(crate) struct StateRows(Vec<u8>, Vec<u8>);

impl StateRows {
    /// Adds `id` (its window encoded aside first, for the row's length).
    pub(crate) fn push(&mut self, id: &StateId) {
        let StateRows(rows, window) = self;
        window.clear();
        encode_window(&id.1, window);
        crate::coder::write_varint((window.len() + id.0.len()) as u64, rows);
        rows.extend_from_slice(window);
        rows.extend_from_slice(&id.0);
    }
    /// No state was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a spilled state becomes a checkpoint entry: its key from the state's id, its
/// value from the state's row (the transform's name is for errors).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColdEntry {
    pub(crate) key: fn(&StateId) -> Vec<u8>,
    pub(crate) value: fn(&[u8], &str) -> Result<Vec<u8>>,
}

/// A spill store's states as they were when it was taken (a redb read snapshot: later
/// writes do not change it, and the file stays readable until it is dropped).
pub(crate) struct ColdView {
    pub(super) states: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// Keeps the database open (its file may be gone from the directory already).
    pub(super) _db: Arc<Database>,
    /// States whose rows were stale then (their live copies were in memory).
    pub(super) stale: FxHashSet<StateId>,
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) entry: ColdEntry,
    /// The states to list (`None`: every one).
    pub(super) only: Option<StateRows>,
}

impl std::fmt::Debug for ColdView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdView")
            .field("path", &self.path)
            .finish()
    }
}

impl crate::checkpoint::LaterEntries for ColdView {
    fn for_each(&self, f: &mut dyn FnMut(Entry<'_>) -> Result<()>) -> Result<()> {
        let ColdEntry { key, value } = self.entry;
        let Some(only) = &self.only else {
            return each_state(
                &self.states,
                &self.stale,
                &self.name,
                &self.path,
                |id, row| f(Entry::Put(&key(&id), &value(row, &self.name)?)),
            );
        };
        let err = |e: &dyn std::fmt::Display| spill_err(&self.name, &self.path, e);
        let mut rows = only.0.as_slice();
        while !rows.is_empty() {
            let len = crate::coder::read_varint(&mut rows).map_err(|e| err(&e))? as usize;
            let row = rows
                .get(..len)
                .ok_or_else(|| err(&"a state row cut short"))?;
            rows = &rows[len..];
            let id = state_of_row(row).map_err(|e| err(&e))?;
            let found = match self.stale.contains(&id) {
                true => None,
                false => self.states.get(row).map_err(|e| err(&e))?,
            };
            match found {
                Some(v) => f(Entry::Put(&key(&id), &value(v.value(), &self.name)?))?,
                None => f(Entry::Delete(&key(&id)))?,
            }
        }
        Ok(())
    }
}

/// Calls `f` with every state of `states` not in `stale`, and its row.
pub(super) fn each_state(
    states: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    stale: &FxHashSet<StateId>,
    name: &str,
    path: &Path,
    mut f: impl FnMut(StateId, &[u8]) -> Result<()>,
) -> Result<()> {
    for row in states.iter().map_err(|e| spill_err(name, path, e))? {
        let (k, v) = row.map_err(|e| spill_err(name, path, e))?;
        let id = state_of_row(k.value()).map_err(|e| spill_err(name, path, e))?;
        if !stale.contains(&id) {
            f(id, v.value())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::state_spill::Queue;
    use crate::window::Window;

    fn id(k: &[u8], w: Window) -> StateId {
        (k.to_vec(), w)
    }

    /// What `view` lists, in order (`None`: a delete).
    fn listed(view: &ColdView) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        use crate::checkpoint::LaterEntries;
        let mut out = Vec::new();
        view.for_each(&mut |e| {
            out.push(match e {
                Entry::Put(k, v) => (k.to_vec(), Some(v.to_vec())),
                Entry::Delete(k) => (k.to_vec(), None),
            });
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_view_lists_the_store_as_it_was_even_after_it_changed_or_was_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut cold = Cold::create(dir.path(), "Dedup", 1 << 20).unwrap();
        let entry = ColdEntry {
            key: |id| id.0.clone(),
            value: |row, _| Ok([row, b"!"].concat()),
        };
        let (a, b, c) = (
            id(b"a", Window::Global),
            id(b"b", Window::Global),
            id(b"c", Window::Global),
        );
        cold.put(vec![
            (a.clone(), b"A".to_vec(), vec![]),
            (b.clone(), b"B".to_vec(), vec![]),
        ])
        .unwrap();
        // `b` read back (stale): its live copy is elsewhere, not listed.
        cold.forget(&b, std::iter::empty::<(Queue, i64, &str)>());
        let all = cold.view(entry, None).unwrap();
        let mut rows = StateRows::default();
        for i in [&a, &b, &c] {
            rows.push(i);
        }
        assert!(cold.may_hold(&a) && !cold.may_hold(&c));
        let some = cold.view(entry, Some(rows)).unwrap();
        // Changed and then dropped (its file deleted) before the views are listed.
        cold.put(vec![
            (a.clone(), b"A2".to_vec(), vec![]),
            (c.clone(), b"C".to_vec(), vec![]),
        ])
        .unwrap();
        drop(cold);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(listed(&all), vec![(b"a".to_vec(), Some(b"A!".to_vec()))]);
        assert_eq!(
            listed(&some),
            vec![
                (b"a".to_vec(), Some(b"A!".to_vec())),
                (b"b".to_vec(), None),
                (b"c".to_vec(), None),
            ]
        );
    }
}
