-- The system offering routers are made from, as CloudStack's network offerings name one: a
-- service offering with a system VM type ('domainrouter'). VM offerings have none. The row
-- itself is made at start (its id is random, which a migration's fixed text cannot give).
ALTER TABLE service_offerings ADD COLUMN system_vm_type TEXT;
