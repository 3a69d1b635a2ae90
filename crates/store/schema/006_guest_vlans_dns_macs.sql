-- The physical network of a zone: the guest VLANs its networks are given (the CloudStack physical
-- network `vlan`, e.g. "100-199,300-349"). One per zone.
CREATE TABLE physical_networks (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    zone_id BIGINT NOT NULL UNIQUE REFERENCES zones(id),
    vlan TEXT NOT NULL,
    created BIGINT NOT NULL
);

-- The DNS servers the guests of a zone are given (the CloudStack zone dns1 and dns2).
ALTER TABLE zones ADD COLUMN dns1 TEXT;
ALTER TABLE zones ADD COLUMN dns2 TEXT;

-- The VLAN of a network, unique in its zone (networks made before VLANs have none), and its DNS
-- domain (the CloudStack `networkdomain`, the default of its account when absent).
ALTER TABLE networks ADD COLUMN vlan BIGINT;
ALTER TABLE networks ADD COLUMN network_domain TEXT;
CREATE UNIQUE INDEX networks_zone_vlan ON networks(zone_id, vlan);

-- The MAC address of a VM NIC, unique in its zone (VMs made before MACs show the one made from
-- their address), and the job that last changed the VM (its deploy or its destruction).
ALTER TABLE vms ADD COLUMN mac TEXT;
ALTER TABLE vms ADD COLUMN job_id BIGINT;
CREATE UNIQUE INDEX vms_zone_mac ON vms(zone_id, mac);
CREATE INDEX vms_job ON vms(job_id);
