-- Secondary addresses of a VM's NIC (addIpToNic): each reserved in the VM's network for that
-- VM, which configures it itself, as on CloudStack. A forward, a balancer member or a static
-- NAT may name one as the VM's address (vmguestip). Rules keep the address they send to, so
-- an address in use by one cannot be removed.
CREATE TABLE nic_secondary_ips (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    vm_id BIGINT NOT NULL REFERENCES vms(id),
    network_id BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    ip TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE UNIQUE INDEX nic_secondary_ips_address ON nic_secondary_ips (network_id, ip);
CREATE INDEX nic_secondary_ips_vm ON nic_secondary_ips (vm_id);
