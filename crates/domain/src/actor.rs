//! Who is asking: the authenticated caller, and what it may touch.

use crate::ids::{AccountId, DomainId, UserId};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub user_id: i64,
    /// User uuid.
    pub user_uuid: String,
    /// Account id.
    pub account_id: i64,
    /// Account uuid.
    pub account_uuid: String,
    /// Account name.
    pub account_name: String,
    /// Domain id.
    pub domain_id: i64,
    /// Domain uuid.
    pub domain_uuid: String,
    /// Domain name.
    pub domain_name: String,
    /// Domain path, e.g. `ROOT`.
    pub domain_path: String,
    /// Root administrator.
    pub admin: bool,
}

impl Caller {
    /// Whether the caller may see and change what `account_id` owns.
    pub fn may_touch(&self, account_id: impl Into<AccountId>) -> bool {
        self.admin || self.account_id == account_id.into().get()
    }

    /// The caller's user, typed.
    pub fn user(&self) -> UserId {
        UserId::from(self.user_id)
    }

    /// The caller's account, typed.
    pub fn account(&self) -> AccountId {
        AccountId::from(self.account_id)
    }

    /// The caller's domain, typed.
    pub fn domain(&self) -> DomainId {
        DomainId::from(self.domain_id)
    }
}
