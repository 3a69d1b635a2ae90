//! The incremental delta against the whole plan: for random rows, random writes carrying
//! their jobs, random batches and random sequences of generations (some refused), the delta
//! applied to the previous generation's config is the config `desired` plans from all the
//! rows, and the bookkeeping is the same.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;
use router_config::{MacAddr, RouterConfig, RouterDelta};

use super::{
    apply_commit, delta, desired, Batch, Commit, NetworkState, Planned, PublicSegment, Touched,
};
use crate::ids::{
    AccountId, IpId, JobId, MemberId, NetworkId, PolicyId, RuleId, VlanRangeId, VmId, ZoneId,
};
use crate::model::{
    IpNat, IpRow, MemberRow, NetworkRow, PolicyKind, PolicyRow, Purpose, Rule, State, Traffic,
    VmNic,
};

fn network() -> NetworkRow {
    NetworkRow {
        id: NetworkId::from(1),
        uuid: "net".into(),
        name: "net".into(),
        display_text: "net".into(),
        account_id: AccountId::from(1),
        zone_id: ZoneId::from(1),
        offering_id: 1,
        cidr: "10.1.1.0/24".parse().unwrap_or_default(),
        gateway: Ipv4Addr::new(10, 1, 1, 1),
        state: "Implemented".into(),
        egress_allow: false,
        created: 0,
        vlan: Some(100),
        network_domain: "cs1cloud.internal".into(),
    }
}

fn ip(id: i64, state: &str, job: Option<i64>) -> IpRow {
    IpRow {
        id: IpId::from(id),
        uuid: format!("ip-{id}"),
        address: Ipv4Addr::new(203, 0, 113, u8::try_from(id).unwrap_or(0)),
        state: state.into(),
        account_id: Some(AccountId::from(1)),
        network_id: Some(NetworkId::from(1)),
        source_nat: id == 1,
        job_id: job.map(JobId::from),
        applied: state == "Allocated" || state == "Releasing",
        allocated: Some(0),
        vlan_range_id: VlanRangeId::from(1),
        zone_id: ZoneId::from(1),
        nat: None,
    }
}

/// A rule of kind `kind` (0 ingress, 1 egress, 2 forward, 3 balancer) on IP 1 or 2.
fn rule(id: i64, kind: u8, on_ip: i64, port: i64, state: State, job: Option<i64>) -> Rule {
    let (purpose, traffic) = match kind {
        0 => (Purpose::Firewall, Some(Traffic::Ingress)),
        1 => (Purpose::Firewall, Some(Traffic::Egress)),
        2 => (Purpose::PortForwarding, None),
        _ => (Purpose::LoadBalancing, None),
    };
    let egress = kind == 1;
    Rule {
        id: RuleId::from(id),
        uuid: format!("rule-{id}"),
        purpose,
        traffic,
        network_id: NetworkId::from(1),
        ip_id: (!egress).then(|| IpId::from(on_ip)),
        ip: (!egress).then(|| Ipv4Addr::new(203, 0, 113, u8::try_from(on_ip).unwrap_or(0))),
        account_id: AccountId::from(1),
        protocol: "tcp".into(),
        start_port: Some(port),
        end_port: Some(port),
        icmp_type: None,
        icmp_code: None,
        source_cidrs: vec!["0.0.0.0/0".into()],
        dest_cidrs: Vec::new(),
        state,
        applied: state == State::Active,
        job_id: job.map(JobId::from),
        related_id: None,
        display: true,
        vm_id: (kind == 2).then(|| VmId::from(1)),
        vm_ip: (kind == 2).then(|| Ipv4Addr::new(10, 1, 1, 11)),
        private_start: (kind >= 2).then_some(8080),
        private_end: (kind == 2).then_some(8080),
        name: None,
        description: None,
        algorithm: (kind == 3).then(|| "roundrobin".into()),
        lb_protocol: None,
        created: 0,
        network_uuid: "net".into(),
        ip_uuid: None,
        vm_uuid: None,
        vm_name: None,
        vm_display: None,
    }
}

fn member(id: i64, lb: i64, state: State, job: Option<i64>) -> MemberRow {
    MemberRow {
        id: MemberId::from(id),
        lb_id: RuleId::from(lb),
        vm_id: VmId::from(id),
        vm_ip: Ipv4Addr::new(10, 1, 1, u8::try_from(10 + id % 200).unwrap_or(10)),
        state,
        applied: state == State::Active,
        job_id: job.map(JobId::from),
    }
}

fn policy(id: i64, lb: i64, state: State, job: Option<i64>) -> PolicyRow {
    PolicyRow {
        id: PolicyId::from(id),
        uuid: format!("policy-{id}"),
        lb_id: RuleId::from(lb),
        kind: PolicyKind::Stickiness,
        name: "sticky".into(),
        description: String::new(),
        method: "SourceBased".into(),
        params: "{}".into(),
        state,
        applied: state == State::Active,
        job_id: job.map(JobId::from),
        display: true,
    }
}

fn vm(id: i64, state: &str, job: Option<i64>) -> VmNic {
    VmNic {
        vm_id: VmId::from(id),
        name: format!("vm{id}"),
        ip: Ipv4Addr::new(10, 1, 1, u8::try_from(100 + id % 100).unwrap_or(100)),
        mac: MacAddr([2, 0, 0, 0, 0, u8::try_from(id % 250).unwrap_or(0)]),
        state: state.into(),
        job_id: job.map(JobId::from),
    }
}

/// A row as a random starting state holds it: any state, any job (a few of them pending).
fn any_state() -> impl Strategy<Value = (State, Option<i64>)> {
    (
        prop_oneof![
            4 => Just(State::Active),
            2 => Just(State::Add),
            1 => Just(State::Revoke)
        ],
        prop_oneof![1 => Just(None), 3 => (1i64..8).prop_map(Some)],
    )
}

/// What the API writes between two generations, each with a job of its own.
#[derive(Debug, Clone)]
enum Write {
    /// A new rule (in Add).
    Create { kind: u8, ip: i64, port: i64 },
    /// The n-th rule revoked.
    Delete(usize),
    /// The n-th rule's port rewritten in place.
    Update(usize, i64),
    /// A member added to the n-th rule (when a balancer).
    Assign(usize),
    /// The n-th member revoked.
    Remove(usize),
    /// A policy added to the n-th rule (when a balancer).
    Stick(usize),
    /// The n-th policy revoked.
    Unstick(usize),
    /// A VM deployed.
    Deploy,
    /// The n-th VM destroyed.
    Destroy(usize),
    /// A new IP associated.
    Associate,
    /// The n-th IP released.
    Release(usize),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => (0u8..4, 1i64..3, 1i64..50).prop_map(|(kind, ip, port)| Write::Create { kind, ip, port }),
        3 => any::<usize>().prop_map(Write::Delete),
        2 => (any::<usize>(), 1i64..50).prop_map(|(i, p)| Write::Update(i, p)),
        2 => any::<usize>().prop_map(Write::Assign),
        1 => any::<usize>().prop_map(Write::Remove),
        1 => any::<usize>().prop_map(Write::Stick),
        1 => any::<usize>().prop_map(Write::Unstick),
        1 => Just(Write::Deploy),
        1 => any::<usize>().prop_map(Write::Destroy),
        1 => Just(Write::Associate),
        1 => any::<usize>().prop_map(Write::Release),
    ]
}

/// One generation: the writes before it, how many pending jobs it carries, whether the router
/// takes it.
#[derive(Debug, Clone)]
struct Step {
    writes: Vec<Write>,
    carry: usize,
    taken: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(write(), 0..4),
        0usize..6,
        prop::bool::weighted(0.85),
    )
        .prop_map(|(writes, carry, taken)| Step {
            writes,
            carry,
            taken,
        })
}

/// The model: the database's rows (which the worker's copy equals), the pending jobs, and
/// the next ids.
struct Model {
    state: NetworkState,
    pending: Vec<JobId>,
    next: i64,
}

impl Model {
    fn job(&mut self) -> JobId {
        self.next += 1;
        let job = JobId::from(self.next);
        self.pending.push(job);
        job
    }

    fn id(&mut self) -> i64 {
        self.next += 1;
        self.next
    }

    /// Applies a write; returns the rows it marked, as a worker's read for its pending jobs
    /// would find them.
    fn write(&mut self, w: &Write, touched: &mut Touched) {
        match *w {
            Write::Create { kind, ip, port } => {
                let job = self.job();
                let id = self.id();
                self.state
                    .rules
                    .push(rule(id, kind, ip, port, State::Add, Some(job.get())));
                touched.rules.insert(RuleId::from(id));
            }
            Write::Delete(n) | Write::Update(n, _) => {
                if self.state.rules.is_empty() {
                    return;
                }
                let job = self.job();
                let i = n % self.state.rules.len();
                let r = &mut self.state.rules[i];
                if let Write::Update(_, port) = *w {
                    r.start_port = Some(port);
                    r.end_port = Some(port);
                } else {
                    r.state = State::Revoke;
                }
                r.job_id = Some(job);
                touched.rules.insert(r.id);
            }
            Write::Assign(n) | Write::Stick(n) => {
                let lbs: Vec<RuleId> = self
                    .state
                    .rules
                    .iter()
                    .filter(|r| r.purpose == Purpose::LoadBalancing)
                    .map(|r| r.id)
                    .collect();
                if lbs.is_empty() {
                    return;
                }
                let lb = lbs[n % lbs.len()].get();
                let job = self.job().get();
                let id = self.id();
                if let Write::Assign(_) = w {
                    self.state
                        .members
                        .push(member(id, lb, State::Add, Some(job)));
                    touched.members.insert(MemberId::from(id));
                } else {
                    self.state
                        .policies
                        .push(policy(id, lb, State::Add, Some(job)));
                    touched.policies.insert(PolicyId::from(id));
                }
            }
            Write::Remove(n) => {
                if self.state.members.is_empty() {
                    return;
                }
                let job = self.job();
                let i = n % self.state.members.len();
                let m = &mut self.state.members[i];
                m.state = State::Revoke;
                m.job_id = Some(job);
                touched.members.insert(m.id);
            }
            Write::Unstick(n) => {
                if self.state.policies.is_empty() {
                    return;
                }
                let job = self.job();
                let i = n % self.state.policies.len();
                let p = &mut self.state.policies[i];
                p.state = State::Revoke;
                p.job_id = Some(job);
                touched.policies.insert(p.id);
            }
            Write::Deploy => {
                let job = self.job().get();
                let id = self.id();
                self.state.vms.push(vm(id, "Starting", Some(job)));
            }
            Write::Destroy(n) => {
                if self.state.vms.is_empty() {
                    return;
                }
                let job = self.job();
                let i = n % self.state.vms.len();
                let v = &mut self.state.vms[i];
                v.state = "Expunging".into();
                v.job_id = Some(job);
            }
            Write::Associate => {
                let job = self.job().get();
                let id = self.id();
                if id < 250 {
                    self.state.ips.push(ip(id, "Allocating", Some(job)));
                }
            }
            Write::Release(n) => {
                if self.state.ips.is_empty() {
                    return;
                }
                let job = self.job();
                let i = n % self.state.ips.len();
                let a = &mut self.state.ips[i];
                a.state = "Releasing".into();
                a.job_id = Some(job);
            }
        }
    }
}

fn sorted(mut c: RouterConfig) -> RouterConfig {
    c.firewall_rules.sort_by_key(|r| r.id);
    c.egress_rules.sort_by_key(|r| r.id);
    c.port_forwards.sort_by_key(|r| r.id);
    c.load_balancers.sort_by_key(|r| r.id);
    c
}

fn normalized(mut c: Commit) -> Commit {
    c.activate_rules.sort();
    c.delete_rules.sort();
    c.demote_rules.sort();
    c.activate_members.sort();
    c.delete_members.sort();
    c.activate_policies.sort();
    c.delete_policies.sort();
    c.allocate_ips.sort();
    c.free_ips.sort();
    c.gone_vms.sort();
    c
}

/// The starting rows: rules of every kind in any state, members and policies of the
/// balancers among them, a VM, two IPs; jobs 1 to 7, of which those below 4 are pending.
fn start() -> impl Strategy<Value = NetworkState> {
    (
        prop::collection::vec((0u8..4, 1i64..3, 1i64..50, any_state()), 0..12),
        prop::collection::vec((any::<usize>(), any_state()), 0..6),
        prop::collection::vec((any::<usize>(), any_state()), 0..3),
    )
        .prop_map(|(rules, members, policies)| {
            let rules: Vec<Rule> = rules
                .into_iter()
                .enumerate()
                .map(|(i, (kind, on_ip, port, (state, job)))| {
                    rule(100 + i as i64, kind, on_ip, port, state, job)
                })
                .collect();
            let lbs: Vec<i64> = rules
                .iter()
                .filter(|r| r.purpose == Purpose::LoadBalancing)
                .map(|r| r.id.get())
                .collect();
            let pick = |n: usize| lbs.get(n % lbs.len().max(1)).copied();
            let members = members
                .into_iter()
                .enumerate()
                .filter_map(|(i, (n, (state, job)))| {
                    pick(n).map(|lb| member(200 + i as i64, lb, state, job))
                })
                .collect();
            let policies = policies
                .into_iter()
                .enumerate()
                .filter_map(|(i, (n, (state, job)))| {
                    pick(n).map(|lb| policy(300 + i as i64, lb, state, job))
                })
                .collect();
            NetworkState {
                network: Some(network()),
                segment: Some(PublicSegment {
                    prefix_len: 24,
                    gateway: Some(Ipv4Addr::new(203, 0, 113, 254)),
                }),
                ips: vec![ip(1, "Allocated", None), ip(2, "Allocated", Some(1))],
                rules,
                members,
                policies,
                vms: vec![vm(1, "Running", None)],
                dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_incremental_delta_is_the_whole_plan(
        rows in start(),
        steps in prop::collection::vec(step(), 1..12),
    ) {
        let mut model = Model {
            state: rows,
            pending: (1..4).map(JobId::from).collect(),
            next: 1000,
        };
        let mut base: Option<Planned> = None;
        // A full read names every row of a pending job.
        let mut touched = Touched::of(&model.state, &model.pending.iter().copied().collect());
        for (g, step) in steps.iter().enumerate() {
            let generation = g as u64 + 1;
            for w in &step.writes {
                model.write(w, &mut touched);
            }
            let pending: BTreeSet<JobId> = model.pending.iter().copied().collect();
            // The worker's bookkeeping of the rows it plans again.
            touched.keep_pending(&model.state, &pending);
            prop_assert_eq!(&touched, &Touched::of(&model.state, &pending));
            let batch = Batch {
                pending: pending.clone(),
                included: model.pending.iter().take(step.carry).copied().collect(),
            };
            let (config, commit) = desired(&model.state, &batch, generation);
            let next = match &base {
                Some(b) => match delta(b, &model.state, &batch, &touched, generation) {
                    Some((d, c)) => {
                        prop_assert_eq!(normalized(c), normalized(commit.clone()));
                        // As the router rebuilds it, and as the worker keeps it.
                        let rebuilt = d.apply_to(&b.config());
                        prop_assert_eq!(rebuilt.map(sorted), Ok(sorted(config.clone())));
                        let mut kept = b.clone();
                        prop_assert_eq!(kept.apply(&d), Ok(()));
                        prop_assert_eq!(&kept, &Planned::new(&config));
                        // No smaller: nothing upserted that the base holds as it is.
                        let whole = RouterDelta::between(&b.config(), &config);
                        prop_assert_eq!(d.size(), whole.size());
                        kept
                    }
                    None => {
                        // Declined only when a side or the egress policy moved.
                        prop_assert!(
                            b.public != config.public
                                || b.guest != config.guest
                                || b.egress_default != config.egress_default
                        );
                        Planned::new(&config)
                    }
                },
                None => Planned::new(&config),
            };
            if step.taken {
                apply_commit(&mut model.state, &commit);
                model.pending.retain(|j| !batch.included.contains(j));
                base = Some(next);
            }
        }
    }
}

/// A creation on a settled network is a delta of that one rule, and its confirmation
/// activates it; a deletion is a removal, and its confirmation deletes the row.
#[test]
fn a_creation_and_a_deletion_are_deltas_of_one_rule() {
    let mut state = NetworkState {
        network: Some(network()),
        segment: None,
        ips: vec![ip(1, "Allocated", None)],
        rules: (1..=5)
            .map(|i| rule(i, 0, 1, i, State::Active, Some(i)))
            .collect(),
        members: Vec::new(),
        policies: Vec::new(),
        vms: Vec::new(),
        dns: Vec::new(),
    };
    let (config, _) = desired(&state, &Batch::default(), 1);
    let base = Planned::new(&config);

    state.rules.push(rule(6, 0, 1, 6, State::Add, Some(10)));
    let batch = Batch {
        pending: [JobId::from(10)].into(),
        included: [JobId::from(10)].into(),
    };
    let touched = Touched::of(&state, &batch.pending);
    let (d, commit) = delta(&base, &state, &batch, &touched, 2).expect("a delta");
    assert_eq!(d.base_generation, 1);
    assert_eq!(d.generation, 2);
    assert_eq!(d.upsert_firewall_rules.len(), 1);
    assert_eq!(d.upsert_firewall_rules[0].id, 6);
    assert!(d.remove.is_empty() && d.dhcp.is_none() && d.public.is_none());
    assert_eq!(commit.activate_rules, vec![RuleId::from(6)]);
    apply_commit(&mut state, &commit);
    let mut base = base;
    base.apply(&d).expect("applies");

    state.rules[2].state = State::Revoke;
    state.rules[2].job_id = Some(JobId::from(11));
    let batch = Batch {
        pending: [JobId::from(11)].into(),
        included: [JobId::from(11)].into(),
    };
    let touched = Touched::of(&state, &batch.pending);
    let (d, commit) = delta(&base, &state, &batch, &touched, 3).expect("a delta");
    assert_eq!(d.remove, vec![3]);
    assert_eq!(d.size(), 1);
    assert_eq!(commit.delete_rules, vec![RuleId::from(3)]);
    apply_commit(&mut state, &commit);
    assert_eq!(state.rules.len(), 5);
}

/// A released IP changes the public side: the delta declines, and the whole plan is made.
#[test]
fn a_changed_public_side_declines_the_delta() {
    let mut state = NetworkState {
        network: Some(network()),
        segment: None,
        ips: vec![ip(1, "Allocated", None), ip(2, "Allocated", None)],
        rules: vec![rule(1, 0, 2, 22, State::Active, None)],
        members: Vec::new(),
        policies: Vec::new(),
        vms: Vec::new(),
        dns: Vec::new(),
    };
    let (config, _) = desired(&state, &Batch::default(), 1);
    let base = Planned::new(&config);
    state.ips[1].state = "Releasing".into();
    state.ips[1].job_id = Some(JobId::from(4));
    let batch = Batch {
        pending: [JobId::from(4)].into(),
        included: [JobId::from(4)].into(),
    };
    let touched = Touched::of(&state, &batch.pending);
    assert!(delta(&base, &state, &batch, &touched, 2).is_none());
}

/// A static NAT follows its IP's job as a rule follows its own: being enabled, it reaches the
/// config with its job and is then Active; being disabled, it stays until its job is carried,
/// then goes. Either way the public side changes, so the delta declines.
#[test]
fn a_static_nat_follows_the_job_of_its_ip() {
    let mut state = NetworkState {
        network: Some(network()),
        segment: None,
        ips: vec![ip(1, "Allocated", None), ip(2, "Allocated", None)],
        rules: vec![rule(1, 0, 2, 22, State::Active, None)],
        members: Vec::new(),
        policies: Vec::new(),
        vms: Vec::new(),
        dns: Vec::new(),
    };
    let (config, _) = desired(&state, &Batch::default(), 1);
    let base = Planned::new(&config);
    let nat_of = |c: &RouterConfig| c.public.addresses[1].static_nat;

    // Enabled by job 5: absent while the job is pending and not carried, present with it.
    state.ips[1].job_id = Some(JobId::from(5));
    state.ips[1].nat = Some(IpNat {
        vm_id: VmId::from(1),
        vm_ip: Ipv4Addr::new(10, 1, 1, 11),
        state: State::Add,
        applied: false,
    });
    let waiting = Batch {
        pending: [JobId::from(5)].into(),
        included: BTreeSet::new(),
    };
    let (c, commit) = desired(&state, &waiting, 2);
    assert_eq!(nat_of(&c), None);
    assert!(commit.activate_nats.is_empty());
    let carried = Batch {
        pending: [JobId::from(5)].into(),
        included: [JobId::from(5)].into(),
    };
    let touched = Touched::of(&state, &carried.pending);
    assert!(delta(&base, &state, &carried, &touched, 2).is_none());
    let (c, commit) = desired(&state, &carried, 2);
    assert_eq!(nat_of(&c), Some(Ipv4Addr::new(10, 1, 1, 11)));
    assert_eq!(commit.activate_nats, vec![IpId::from(2)]);
    apply_commit(&mut state, &commit);
    let nat = state.ips[1].nat.clone().unwrap();
    assert_eq!((nat.state, nat.applied), (State::Active, true));

    // Disabled by job 6: still held until job 6 is carried, then cleared.
    state.ips[1].job_id = Some(JobId::from(6));
    state.ips[1].nat.as_mut().unwrap().state = State::Revoke;
    let waiting = Batch {
        pending: [JobId::from(6)].into(),
        included: BTreeSet::new(),
    };
    assert_eq!(
        nat_of(&desired(&state, &waiting, 3).0),
        Some(Ipv4Addr::new(10, 1, 1, 11))
    );
    let carried = Batch {
        pending: [JobId::from(6)].into(),
        included: [JobId::from(6)].into(),
    };
    let (c, commit) = desired(&state, &carried, 3);
    assert_eq!(nat_of(&c), None);
    assert_eq!(commit.clear_nats, vec![IpId::from(2)]);
    apply_commit(&mut state, &commit);
    assert_eq!(state.ips[1].nat, None);
}

#[test]
fn a_balancer_on_port_80_speaks_http_and_tcp_proxy_sends_the_proxy_protocol() {
    let mut proxied = rule(3, 3, 2, 80, State::Active, None);
    proxied.lb_protocol = Some("tcp-proxy".into());
    let state = NetworkState {
        network: Some(network()),
        segment: None,
        ips: vec![ip(1, "Allocated", None), ip(2, "Allocated", None)],
        rules: vec![
            rule(1, 3, 1, 80, State::Active, None),
            rule(2, 3, 1, 443, State::Active, None),
            proxied,
        ],
        // A balancer without members is not planned.
        members: vec![
            member(1, 1, State::Active, None),
            member(2, 2, State::Active, None),
            member(3, 3, State::Active, None),
        ],
        policies: Vec::new(),
        vms: Vec::new(),
        dns: Vec::new(),
    };
    let (config, _) = desired(&state, &Batch::default(), 1);
    let shape: Vec<(u32, &str, Option<u8>)> = config
        .load_balancers
        .iter()
        .map(|lb| (lb.public_port, lb.protocol.as_str(), lb.proxy_protocol))
        .collect();
    // Port 80: HTTP (X-Forwarded-For); another port: TCP; tcp-proxy on port 80: TCP with
    // version 2 of the PROXY protocol, which carries the client's address instead.
    assert_eq!(
        shape,
        vec![(80, "http", None), (443, "tcp", None), (80, "tcp", Some(2))]
    );
}
