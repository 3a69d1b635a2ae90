-- The widest port range of the rules on a public IP, one step down this index: it bounds where
-- a rule that meets a new rule's ports can start, so the conflict checks read the rules they
-- find and not every rule on the IP.
CREATE INDEX rules_ip_width ON rules(ip_id, (end_port - start_port));
