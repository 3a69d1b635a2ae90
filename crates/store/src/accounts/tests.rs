//! Accounts, limits and tokens on a seeded database, on SQLite and PostgreSQL: what the
//! statements write is what the listings read back, a taken name is told apart from other
//! failures, and counts follow the rows.

use std::net::Ipv4Addr;

use domain::ids::{AccountId, DomainId};
use domain::limits::{LimitOwner, Resource};

use crate::accounts::{self, AccountFilter, NewAccount, NewUser, UserFilter};
use crate::db::Db;
use crate::limits::{self, Holders};
use crate::seed::{PublicRange, Seed, SeedOffering};
use crate::testing::PgDatabase;

async fn seeded(db: &Db) {
    let offerings = [SeedOffering {
        name: "offering",
        display_text: "an offering",
        egress_default_allow: false,
        is_default: true,
    }];
    crate::seed::seed(
        db,
        &Seed {
            admin_password_hash: "not-a-hash",
            zone_name: "zone",
            offerings: &offerings,
            service_offering: ("small", "a small one"),
            template: ("guest", "a guest"),
            range: PublicRange {
                vlan: "untagged".into(),
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                start: Ipv4Addr::new(192, 0, 2, 10),
                end: Ipv4Addr::new(192, 0, 2, 19),
            },
        },
    )
    .await
    .unwrap();
}

async fn add_account(
    db: &Db,
    domain: DomainId,
    name: &str,
) -> Result<AccountId, crate::StoreError> {
    let mut change = db.change(None).await.unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    let id = accounts::insert_account(
        change.conn(),
        NewAccount {
            uuid: &uuid,
            name,
            domain,
            account_type: 0,
            created: 1,
        },
    )
    .await?;
    accounts::insert_user(
        change.conn(),
        NewUser {
            uuid: &uuid::Uuid::new_v4().to_string(),
            account: id,
            username: name,
            password_hash: "h",
            email: "e@example.org",
            firstname: "F",
            lastname: "L",
            created: 1,
        },
    )
    .await?;
    let _nothing_to_ring = change.commit().await.unwrap();
    Ok(id)
}

async fn exercise(db: &Db) {
    assert!(!crate::seed::seeded(db).await.unwrap());
    seeded(db).await;
    assert!(crate::seed::seeded(db).await.unwrap());
    let (_, _, zone) = crate::seed::first_zone(db).await.unwrap().unwrap();
    assert_eq!(zone, "zone");
    let root = accounts::root_domain(db).await.unwrap().unwrap();

    let bob = add_account(db, root, "bob").await.unwrap();
    let again = add_account(db, root, "bob").await.unwrap_err();
    assert!(accounts::is_duplicate(&again), "{again:?}");
    assert!(!accounts::is_duplicate(&crate::StoreError::NotFound {
        what: "account",
        id: 1
    }));

    let all = accounts::list_accounts(db, &AccountFilter::default())
        .await
        .unwrap();
    let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["admin", "bob"]);
    let one = accounts::list_accounts(
        db,
        &AccountFilter {
            account: Some(bob),
            ..AccountFilter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].domain_path, "ROOT");
    let nowhere = accounts::list_accounts(
        db,
        &AccountFilter {
            domains: Some(&[]),
            ..AccountFilter::default()
        },
    )
    .await
    .unwrap();
    assert!(nowhere.is_empty());
    let users = accounts::list_users(
        db,
        &UserFilter {
            account_name: Some("bob"),
            ..UserFilter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].account_id, bob);
    assert_eq!(users[0].api_key, None);
    assert_eq!(
        accounts::users_of(db, &[bob]).await.unwrap(),
        users,
        "users_of reads what list_users does"
    );
    let first = accounts::first_user(db).await.unwrap().unwrap();
    assert_ne!(first, users[0].id);
    assert_eq!(
        accounts::owner_names(db, bob).await.unwrap().domain_name,
        "ROOT"
    );

    // Keys.
    let mut change = db.change(None).await.unwrap();
    accounts::set_keys(change.conn(), users[0].id, "api", "secret")
        .await
        .unwrap();
    let _nothing_to_ring = change.commit().await.unwrap();
    let keys = accounts::keys_of(db, "bob").await.unwrap().unwrap();
    assert_eq!(
        (keys.api_key.as_deref(), keys.secret_key.as_deref()),
        (Some("api"), Some("secret"))
    );
    assert_eq!(accounts::keys_of(db, "nobody").await.unwrap(), None);

    // Limits: an explicit limit is read back, by owner and by its row's id.
    let mut conn = limits::connection(db).await.unwrap();
    let owner = LimitOwner::Account(bob);
    assert_eq!(
        limits::explicit(&mut conn, owner, Resource::PublicIp)
            .await
            .unwrap(),
        None
    );
    limits::set(&mut conn, owner, Resource::PublicIp, 3)
        .await
        .unwrap();
    limits::set(&mut conn, owner, Resource::PublicIp, 4)
        .await
        .unwrap();
    assert_eq!(
        limits::explicit(&mut conn, owner, Resource::PublicIp)
            .await
            .unwrap(),
        Some(4)
    );
    assert_eq!(
        limits::row(&mut conn, 1).await.unwrap(),
        Some((owner, Resource::PublicIp))
    );
    assert_eq!(limits::row(&mut conn, 99).await.unwrap(), None);
    let named = limits::account_named(&mut conn, "bob", Some(root))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(named.id, bob);
    assert!(!named.root_admin);
    assert!(limits::account(&mut conn, AccountId::from(0))
        .await
        .is_err());
    assert_eq!(
        limits::held(&mut conn, Resource::PublicIp, Holders::Account(bob))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        limits::held(&mut conn, Resource::Network, Holders::Domains(&[root]))
            .await
            .unwrap(),
        0
    );
    drop(conn);
    let mut change = db.change(None).await.unwrap();
    let dialect = change.dialect();
    limits::lock_taker(change.conn(), dialect, bob, &[root])
        .await
        .unwrap();
    drop(change);

    // Tokens: one host row however often it is ensured; a revocation happens once.
    let mut change = db.change(None).await.unwrap();
    let (host, host_uuid) = crate::tokens::ensure_host(change.conn(), "edge-1", 5)
        .await
        .unwrap();
    let (same, _) = crate::tokens::ensure_host(change.conn(), "edge-1", 6)
        .await
        .unwrap();
    assert_eq!(host, same);
    crate::tokens::insert(change.conn(), "t-1", host, "digest", 7)
        .await
        .unwrap();
    let (token, host_name) = crate::tokens::by_uuid(change.conn(), "t-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(host_name, "edge-1");
    assert!(crate::tokens::revoke(change.conn(), token, 8)
        .await
        .unwrap());
    assert!(!crate::tokens::revoke(change.conn(), token, 9)
        .await
        .unwrap());
    let _nothing_to_ring = change.commit().await.unwrap();
    let listed = crate::tokens::list(db, None, Some("edge-1")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked, Some(8));
    assert_eq!(listed[0].host_uuid, host_uuid);
    let hosts = crate::tokens::hosts(db, None, Some("edge-1"))
        .await
        .unwrap();
    assert_eq!(hosts.len(), 1);
    assert!(!hosts[0].connected);
    assert_eq!(hosts[0].routers, 0);
}

#[tokio::test]
async fn on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let db = Db::connect(&url).await.unwrap();
    exercise(&db).await;
}

#[tokio::test]
async fn on_postgres() {
    let pg = PgDatabase::create("store_accounts").await;
    let db = Db::connect(&pg.url).await.unwrap();
    exercise(&db).await;
    db.pool().close().await;
    pg.drop().await;
}
