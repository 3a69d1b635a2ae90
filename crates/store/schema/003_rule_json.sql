-- The stable members of each firewall and forwarding rule's API object (JSON text without
-- the braces), rendered when the rule is written, so that listing thousands of rules only
-- joins texts.
ALTER TABLE rules ADD COLUMN json TEXT
