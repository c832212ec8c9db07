//! GroupService rules: named sets of an account's users, used as share subjects.

use crate::clock::SharedClock;
use crate::store::Store;

#[derive(Clone)]
pub struct Groups {
    #[allow(dead_code)]
    store: Store,
    #[allow(dead_code)]
    clock: SharedClock,
}

impl Groups {
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { store, clock }
    }
}
