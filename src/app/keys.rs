//! API keys: create, list and revoke (admin), and the key ring the HTTP guard checks requests against.

use tracing::instrument;

pub use crate::auth::{KeyError, KeyRing, NewKey, Principal};
pub use crate::store::KeyRow;

use super::App;

impl App {
    /// The key ring (in memory, kept in step with the store), for the guard that authenticates requests.
    pub fn key_ring(&self) -> KeyRing {
        self.keys.clone()
    }

    /// True when requests must carry a key (an admin key is configured).
    pub fn keys_required(&self) -> bool {
        self.keys.enabled()
    }

    /// Creates a key; returns its record and its secret (shown only now).
    #[instrument(skip_all, fields(tenant = %by.tenant))]
    pub async fn create_key(
        &self,
        by: &Principal,
        new: NewKey,
    ) -> Result<(KeyRow, String), KeyError> {
        self.keys.create(by, new).await
    }

    /// The keys `by` may see.
    #[instrument(skip_all, fields(tenant = %by.tenant))]
    pub async fn keys(&self, by: &Principal) -> Result<Vec<KeyRow>, KeyError> {
        self.keys.list(by).await
    }

    /// Revokes a key; `None` when there is no active key with that id that `by` may manage.
    #[instrument(skip(self, by), fields(tenant = %by.tenant))]
    pub async fn revoke_key(&self, by: &Principal, id: &str) -> Result<Option<KeyRow>, KeyError> {
        self.keys.revoke(by, id).await
    }
}
