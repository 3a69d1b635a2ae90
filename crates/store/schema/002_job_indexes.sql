-- Workers read the rows their network's pending jobs changed, by job id.
CREATE INDEX rules_job ON rules(job_id);
CREATE INDEX lb_members_job ON lb_members(job_id);
CREATE INDEX lb_policies_job ON lb_policies(job_id);
CREATE INDEX public_ips_job ON public_ips(job_id)
