-- Resource limits set by updateResourceLimit: one row per owner (an account or a domain) and
-- resource type. An owner without a row has the default limit of its kind (see
-- crates/mgmt/src/cmd/limits.rs), and -1 means no limit.
CREATE TABLE resource_limits (
    id {pk},
    owner_kind TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    resource_type BIGINT NOT NULL,
    max_value BIGINT NOT NULL,
    UNIQUE (owner_kind, owner_id, resource_type)
);

-- What an account holds is counted whenever it takes more.
CREATE INDEX rules_account ON rules(account_id, state);
CREATE INDEX public_ips_account ON public_ips(account_id, state);
CREATE INDEX vms_account ON vms(account_id)
