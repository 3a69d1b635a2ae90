//! The conditions of whose rows a listing shows.

use domain::ids::{AccountId, DomainId};

use super::*;
use crate::filter::Arg;

#[test]
fn owners_conditions_number_their_arguments_after_the_others() {
    let mut f = Filter::new();
    f.and("x = $?", [1_i64]);
    Owners::Account(AccountId::from(7)).restrict(&mut f, "n.account_id");
    Owners::DomainTree(DomainId::from(2), "/root/a".into()).restrict(&mut f, "v.account_id");
    Owners::Everyone.restrict(&mut f, "p.account_id");
    assert_eq!(
        f.where_clause(),
        "WHERE 1 = 1 AND (x = $1) AND (n.account_id = $2) AND (v.account_id IN (SELECT a.id \
         FROM accounts a JOIN domains d ON d.id = a.domain_id WHERE d.id = $3 OR d.path LIKE $4))"
    );
    assert_eq!(f.args()[3], Arg::Text("/root/a/%".into()));
}
