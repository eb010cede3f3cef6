//! The members admitted to the synchronizer and their public keys, cached from the store.

use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::RwLock;

pub(crate) struct Members {
    store: Store,
    keys: RwLock<HashMap<String, Vec<u8>>>,
}

impl Members {
    pub(super) fn new(store: Store) -> Self {
        Self {
            store,
            keys: RwLock::new(HashMap::new()),
        }
    }

    /// The key of `member`, reloading the registry from the database on a miss (another
    /// sequencer may have admitted it).
    pub(super) async fn key_of(&self, member: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(key) = self.cached(member) {
            return Ok(Some(key));
        }
        self.reload().await?;
        Ok(self.cached(member))
    }

    fn cached(&self, member: &str) -> Option<Vec<u8>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(member)
            .cloned()
    }

    pub(super) async fn reload(&self) -> Result<(), StoreError> {
        let all = self.store.members_with_keys().await?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = all.into_iter().collect();
        Ok(())
    }

    pub(super) fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        all.sort();
        all
    }
}
