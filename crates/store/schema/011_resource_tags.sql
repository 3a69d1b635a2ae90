-- Resource tags (createTags): a key and value on a firewall rule, forward, balancer, public IP,
-- network or VM, kept by the resource's type and internal id. A rule's tags are also kept as
-- the JSON text its object shows (rules.tags), rewritten with every change of them, so a
-- listing of thousands of rules reads one column instead of joining their tags.
CREATE TABLE resource_tags (
    id {pk},
    uuid TEXT NOT NULL UNIQUE,
    resource_type TEXT NOT NULL,
    resource_id BIGINT NOT NULL,
    resource_uuid TEXT NOT NULL,
    tag_key TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    account_id BIGINT NOT NULL,
    customer TEXT,
    created BIGINT NOT NULL
);
CREATE UNIQUE INDEX resource_tags_key ON resource_tags (resource_type, resource_id, tag_key);
CREATE INDEX resource_tags_pair ON resource_tags (resource_type, tag_key, tag_value);
CREATE INDEX resource_tags_account ON resource_tags (account_id);
ALTER TABLE rules ADD COLUMN tags TEXT;
-- A rule's stored object no longer holds its (empty) tags: a listing adds them from rules.tags.
UPDATE rules SET json = REPLACE(json, ',"tags":[]', '') WHERE json IS NOT NULL;
