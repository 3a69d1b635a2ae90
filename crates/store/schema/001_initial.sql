-- The management server's schema. `{pk}` is the dialect's auto-increment primary key.
-- Booleans are 0/1, times are unix milliseconds, uuids are the API's ids.

CREATE TABLE domains (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    parent_id BIGINT REFERENCES domains(id),
    created BIGINT NOT NULL
);

CREATE TABLE accounts (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    domain_id BIGINT NOT NULL REFERENCES domains(id),
    account_type BIGINT NOT NULL,
    state TEXT NOT NULL,
    created BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    email TEXT NOT NULL,
    firstname TEXT NOT NULL,
    lastname TEXT NOT NULL,
    api_key TEXT UNIQUE,
    secret_key TEXT,
    state TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE zones (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    created BIGINT NOT NULL
);

CREATE TABLE network_offerings (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    display_text TEXT NOT NULL,
    egress_default_allow BIGINT NOT NULL,
    is_default BIGINT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE service_offerings (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    display_text TEXT NOT NULL,
    cpu_number BIGINT NOT NULL,
    cpu_speed BIGINT NOT NULL,
    memory BIGINT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE templates (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    display_text TEXT NOT NULL,
    os_type TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE vlan_ranges (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    zone_id BIGINT NOT NULL REFERENCES zones(id),
    vlan TEXT NOT NULL,
    gateway TEXT NOT NULL,
    netmask TEXT NOT NULL,
    start_ip TEXT NOT NULL,
    end_ip TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE networks (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    display_text TEXT NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    zone_id BIGINT NOT NULL REFERENCES zones(id),
    offering_id BIGINT NOT NULL REFERENCES network_offerings(id),
    cidr TEXT NOT NULL,
    gateway TEXT NOT NULL,
    state TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX networks_account ON networks(account_id);

CREATE TABLE routers (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    network_id BIGINT NOT NULL UNIQUE REFERENCES networks(id),
    host TEXT NOT NULL,
    state TEXT NOT NULL,
    desired_generation BIGINT NOT NULL,
    applied_generation BIGINT NOT NULL,
    applied_at BIGINT,
    last_error TEXT,
    created BIGINT NOT NULL
);

CREATE TABLE public_ips (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL UNIQUE,
    address_num BIGINT NOT NULL,
    vlan_range_id BIGINT NOT NULL REFERENCES vlan_ranges(id),
    zone_id BIGINT NOT NULL REFERENCES zones(id),
    state TEXT NOT NULL,
    account_id BIGINT REFERENCES accounts(id),
    network_id BIGINT REFERENCES networks(id),
    source_nat BIGINT NOT NULL,
    job_id BIGINT,
    applied BIGINT NOT NULL,
    allocated BIGINT
);
CREATE INDEX public_ips_network ON public_ips(network_id);
CREATE INDEX public_ips_free ON public_ips(state, address_num);

CREATE TABLE vms (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    zone_id BIGINT NOT NULL REFERENCES zones(id),
    network_id BIGINT NOT NULL REFERENCES networks(id),
    service_offering_id BIGINT NOT NULL REFERENCES service_offerings(id),
    template_id BIGINT NOT NULL REFERENCES templates(id),
    nic_uuid TEXT NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    state TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX vms_network ON vms(network_id);
CREATE INDEX vms_name ON vms(name);

CREATE TABLE rules (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    traffic_type TEXT,
    network_id BIGINT NOT NULL REFERENCES networks(id),
    ip_id BIGINT REFERENCES public_ips(id),
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    protocol TEXT NOT NULL,
    start_port BIGINT,
    end_port BIGINT,
    icmp_type BIGINT,
    icmp_code BIGINT,
    source_cidrs TEXT NOT NULL,
    dest_cidrs TEXT NOT NULL,
    state TEXT NOT NULL,
    applied BIGINT NOT NULL,
    job_id BIGINT,
    related_id BIGINT,
    rule_type TEXT NOT NULL,
    display BIGINT NOT NULL,
    vm_id BIGINT REFERENCES vms(id),
    vm_ip TEXT,
    private_start BIGINT,
    private_end BIGINT,
    name TEXT,
    description TEXT,
    algorithm TEXT,
    lb_protocol TEXT,
    created BIGINT NOT NULL
);
CREATE INDEX rules_network ON rules(network_id, purpose);
CREATE INDEX rules_ip_ports ON rules(ip_id, start_port);
CREATE INDEX rules_related ON rules(related_id);

CREATE TABLE lb_members (
    id {pk},
    lb_id BIGINT NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
    vm_id BIGINT NOT NULL REFERENCES vms(id),
    vm_ip TEXT NOT NULL,
    state TEXT NOT NULL,
    applied BIGINT NOT NULL,
    job_id BIGINT,
    UNIQUE (lb_id, vm_id, vm_ip)
);

CREATE TABLE lb_policies (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    lb_id BIGINT NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    applied BIGINT NOT NULL,
    job_id BIGINT,
    display BIGINT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX lb_policies_lb ON lb_policies(lb_id);

CREATE TABLE jobs (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    cmd TEXT NOT NULL,
    kind TEXT NOT NULL,
    network_id BIGINT,
    payload TEXT NOT NULL,
    status BIGINT NOT NULL,
    result_code BIGINT NOT NULL,
    result TEXT,
    instance_type TEXT,
    instance_uuid TEXT,
    created BIGINT NOT NULL,
    completed BIGINT
);
CREATE INDEX jobs_pending ON jobs(network_id, status);
CREATE INDEX jobs_account ON jobs(account_id);

CREATE TABLE events (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    account_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    level TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    resource_uuid TEXT,
    job_uuid TEXT,
    created BIGINT NOT NULL
);
CREATE INDEX events_account ON events(account_id);
