//! UserService rules: members of an account, their roles, invitations and profiles.

use crate::clock::SharedClock;
use crate::store::Store;

#[derive(Clone)]
pub struct Users {
    #[allow(dead_code)]
    store: Store,
    #[allow(dead_code)]
    clock: SharedClock,
}

impl Users {
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { store, clock }
    }
}
