-- Static NAT: a public IP 1:1 NAT to a VM's guest address. It lives on the IP's row, with the
-- lifecycle of a rule (nat_state Add, Active or Revoke, and nat_applied once a router held it),
-- and the job that enables or disables it is the IP's job_id.
ALTER TABLE public_ips ADD COLUMN nat_vm_id BIGINT;
ALTER TABLE public_ips ADD COLUMN nat_vm_ip TEXT;
ALTER TABLE public_ips ADD COLUMN nat_state TEXT;
ALTER TABLE public_ips ADD COLUMN nat_applied BIGINT NOT NULL DEFAULT 0;
CREATE INDEX public_ips_nat_vm ON public_ips (nat_vm_id);
