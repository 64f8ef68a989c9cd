//! API keys and who a request acts for. A key belongs to one tenant and carries scopes; the tenant of every
//! stored object comes from the key, never from a request body.
//!
//! Keys are kept in memory ([`KeyRing`]) and written through to the store, so checking a key costs one
//! SHA-256 and one map lookup; creating and revoking update both at once (revocation takes effect on the
//! next request). Only the hash of a secret is stored, and hashes are compared in constant time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{KeyRow, Store, StoreError};

/// The tenant of the configured admin key and of every request when the server runs without keys.
pub const DEFAULT_TENANT: &str = "default";
/// Longest tenant name.
const MAX_TENANT_LEN: usize = 64;
/// Longest key name.
const MAX_NAME_LEN: usize = 200;
/// Prefix of every generated secret, so leaked keys are easy to find in code and logs.
const SECRET_PREFIX: &str = "dpk_";
/// Characters of a secret shown in key lists.
const SHOWN_PREFIX_LEN: usize = 12;

/// What a key may do. Each scope includes the ones below it: `admin` ⊃ `write` ⊃ `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// List, read, search, chat, embed.
    Read,
    /// Also upload and delete files.
    Write,
    /// Also manage keys and read `/metrics`.
    Admin,
}

impl Scope {
    /// The scope's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant whose objects the request sees and creates.
    pub tenant: String,
    /// The key used (`admin` for the configured admin key, `None` when the server runs open).
    pub key_id: Option<String>,
    /// The highest scope held.
    pub scope: Scope,
    /// The configured admin key, or an open server: may manage keys of every tenant.
    pub root: bool,
}

impl Principal {
    /// The principal of every request of a server without keys.
    pub fn open() -> Principal {
        Principal {
            tenant: DEFAULT_TENANT.to_owned(),
            key_id: None,
            scope: Scope::Admin,
            root: true,
        }
    }

    /// True when the principal holds `scope` (or a higher one).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scope >= scope
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "an API key is required: send it as `X-API-Key: <key>` or `Authorization: Bearer <key>`"
    )]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the API key lacks the `{}` scope this operation needs", .0.as_str())]
    Forbidden(Scope),
    #[error(
        "this shows every tenant's activity: it needs the server's admin key (DOCPIPE_ADMIN_KEY), not a tenant's key"
    )]
    ServerWide,
}

/// Why a key could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String, &'static str),
    #[error("an admin key may only manage keys of its own tenant")]
    OtherTenant,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Human label.
    pub name: String,
    /// Scope names.
    pub scopes: Vec<String>,
    /// The tenant; defaults to the creator's.
    pub tenant: Option<String>,
    /// When the key stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The keys, in memory, backed by the store.
#[derive(Clone)]
pub struct KeyRing {
    store: Store,
    admin_hash: Option<[u8; 32]>,
    /// By hex SHA-256 of the secret; revoked keys stay so they answer "revoked", not "invalid".
    keys: Arc<RwLock<HashMap<String, KeyRow>>>,
}

fn sha256(secret: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(secret.as_bytes()));
    out
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// True for a usable tenant name: 1-64 of `A-Z a-z 0-9 _ - .` (no `/`, which separates it in storage keys).
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TENANT_LEN
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl KeyRing {
    /// Loads every key from the store. With `admin_key` set, requests need a key; without, the server is open.
    pub async fn load(store: Store, admin_key: Option<&str>) -> Result<KeyRing, StoreError> {
        let keys = store
            .list_keys()
            .await?
            .into_iter()
            .map(|k| (k.key_hash.clone(), k))
            .collect();
        Ok(KeyRing {
            store,
            admin_hash: admin_key.filter(|k| !k.is_empty()).map(sha256),
            keys: Arc::new(RwLock::new(keys)),
        })
    }

    /// True when requests must carry a key.
    pub fn enabled(&self) -> bool {
        self.admin_hash.is_some()
    }

    /// The principal of a presented secret.
    pub fn authenticate(&self, secret: &str) -> Result<Principal, AuthError> {
        let hash = sha256(secret);
        if let Some(admin) = &self.admin_hash
            && bool::from(admin.ct_eq(&hash))
        {
            return Ok(Principal {
                tenant: DEFAULT_TENANT.to_owned(),
                key_id: Some("admin".to_owned()),
                scope: Scope::Admin,
                root: true,
            });
        }
        let hex_hash = hex::encode(hash);
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = keys.get(&hex_hash).ok_or(AuthError::Invalid)?;
        // The map lookup found it by hash; confirm in constant time all the same.
        if !bool::from(key.key_hash.as_bytes().ct_eq(hex_hash.as_bytes())) {
            return Err(AuthError::Invalid);
        }
        if key.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if key.expires_at.is_some_and(|e| e <= now_ms()) {
            return Err(AuthError::Expired);
        }
        let scope = key
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .max()
            .ok_or(AuthError::Invalid)?;
        Ok(Principal {
            tenant: key.tenant.clone(),
            key_id: Some(key.id.clone()),
            scope,
            root: false,
        })
    }

    /// Creates a key for `by`'s tenant (or, for a root principal, any tenant). Returns it with its secret,
    /// which is not stored and cannot be shown again.
    pub async fn create(&self, by: &Principal, new: NewKey) -> Result<(KeyRow, String), KeyError> {
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(KeyError::Invalid(
                format!("name must have 1 to {MAX_NAME_LEN} characters"),
                "name",
            ));
        }
        let mut scopes = Vec::new();
        for s in &new.scopes {
            let scope = Scope::parse(s).ok_or_else(|| {
                KeyError::Invalid(
                    format!("unknown scope `{s}`: use read, write or admin"),
                    "scopes",
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(KeyError::Invalid(
                "scopes must name at least one of read, write, admin".into(),
                "scopes",
            ));
        }
        let tenant = new.tenant.unwrap_or_else(|| by.tenant.clone());
        if !valid_tenant(&tenant) {
            return Err(KeyError::Invalid(
                format!(
                    "tenant must have 1 to {MAX_TENANT_LEN} characters of A-Z, a-z, 0-9, `_`, `-`, `.`"
                ),
                "tenant",
            ));
        }
        if !by.root && tenant != by.tenant {
            return Err(KeyError::OtherTenant);
        }
        let expires_at = new.expires_at.map(|t| t.timestamp_millis());
        if expires_at.is_some_and(|e| e <= now_ms()) {
            return Err(KeyError::Invalid(
                "expires_at must be in the future".into(),
                "expires_at",
            ));
        }
        let secret = format!(
            "{SECRET_PREFIX}{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let row = KeyRow {
            id: format!("key_{}", uuid::Uuid::new_v4().simple()),
            name,
            tenant,
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            key_hash: hex::encode(sha256(&secret)),
            prefix: secret.chars().take(SHOWN_PREFIX_LEN).collect(),
            created_at: 0,
            expires_at,
            revoked_at: None,
        };
        let row = self.store.insert_key(&row).await?;
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(row.key_hash.clone(), row.clone());
        Ok((row, secret))
    }

    /// The keys `by` may see: all for root, else its tenant's.
    pub async fn list(&self, by: &Principal) -> Result<Vec<KeyRow>, KeyError> {
        let mut keys = self.store.list_keys().await?;
        keys.retain(|k| by.root || k.tenant == by.tenant);
        Ok(keys)
    }

    /// Revokes a key at once. `None` when there is no such key that `by` may manage, or it was revoked.
    pub async fn revoke(&self, by: &Principal, id: &str) -> Result<Option<KeyRow>, KeyError> {
        let visible = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .any(|k| k.id == id && k.revoked_at.is_none() && (by.root || k.tenant == by.tenant));
        if !visible {
            return Ok(None);
        }
        let Some(row) = self.store.revoke_key(id).await? else {
            return Ok(None);
        };
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(row.key_hash.clone(), row.clone());
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_include_lower_ones() {
        let p = |scope| Principal {
            tenant: "t".into(),
            key_id: None,
            scope,
            root: false,
        };
        assert!(p(Scope::Admin).allows(Scope::Write));
        assert!(p(Scope::Write).allows(Scope::Read));
        assert!(!p(Scope::Read).allows(Scope::Write));
        assert!(!p(Scope::Write).allows(Scope::Admin));
    }

    #[test]
    fn tenant_names_cannot_hold_separators() {
        assert!(valid_tenant("acme-corp_1.eu"));
        assert!(!valid_tenant(""));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant("a b"));
        assert!(!valid_tenant(&"x".repeat(65)));
    }
}
