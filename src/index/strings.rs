//! Interning of the links' strings: one shared copy of each hypothesis id
//! and rationale, so that 100,000 links do not each carry their own (at
//! that size, a fifth of the index's memory), and so that a rescore can
//! find a hypothesis by the address of its id string instead of hashing it
//! (see `rescore::LinkTerms`).

use std::collections::HashSet;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

/// One shared copy of each hypothesis id and rationale the links use.
#[derive(Debug, Default)]
pub(super) struct Strings {
    set: HashSet<Arc<str>, FxBuildHasher>,
    /// Size after the last sweep of strings no link holds any more.
    swept_at: usize,
}

impl Strings {
    pub(super) fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        if self.set.len() >= 1024.max(2 * self.swept_at) {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.swept_at = self.set.len();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }

    /// The shared copy of `s`, if a link holds one.
    pub(super) fn shared(&self, s: &str) -> Option<&Arc<str>> {
        self.set.get(s)
    }
}
