//! Parsing of haproxy 2.6.12 answers, from texts captured from the real haproxy.

use super::*;

/// `prompt`, then `add server rr/a …`, `del server rr/zz`, `del server nob/x`, `enable server
/// rr/a`, `show backend`, `disable server rr/a`, `del server rr/a`, `del server rr`, `foo bar`,
/// `add server src/b … cookie x`, `set server rr/zz weight 3`, `show version`.
const PROMPTED: &str = "\n> New server registered.\n\n> No such server.\n> No such backend.\n> \n> # name\nrr\nsrc\n\n> \n> Server deleted.\n> Require 'backend/server'.\n> Unknown command, but maybe one of the following ones is a better match:\n  clear acl [@<ver>] <acl>                : clear the contents of this acl\n  quit                                    : disconnect\n\n> 'cookie' option is not accepted for dynamic server\n\n> No such server.\n\n> 2.6.12-1+deb12u4\n\n> ";

/// The same kind of commands separated by `;`: `del server` answers lack the closing blank line.
const SEMICOLONS: &str =
    "No such server.\n# name\nrr\nsrc\n\nNo such backend.\nRequire 'backend/server'.\n";

const SHOW_PROC: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n4419            master          3 [failed: 0]   0d00h10m47s     2.6.12-1+deb12u4\n# workers\n8697            worker          0               0d00h00m00s     2.6.12-1+deb12u4\n# old workers\n8572            worker          1               0d00h00m08s     2.6.12-1+deb12u4\n# programs\n\n";

const SHOW_PROC_FAILED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n4419            master          4 [failed: 1]   0d00h10m50s     2.6.12-1+deb12u4\n# workers\n8697            worker          1               0d00h00m03s     2.6.12-1+deb12u4\n# programs\n\n";

const SERVERS_STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n2 rr 1 a 127.0.0.1 2 0 1 1 0 1 0 0 6 0 0 0 - 9000 - 0 0 - - 0\n2 rr 2 b 127.0.0.1 0 1 1 1 0 1 0 0 0 0 0 0 - 9009 - 0 0 - - 0\n3 src 1 s1 127.0.0.1 0 0 1 1 70 8 2 0 6 0 0 0 - 9001 - 0 0 - - 0\n3 src 2 c 127.0.0.1 2 0 1 1 0 1 0 0 0 0 0 0 - 9000 - 0 0 - - 0";

const SHOW_STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
rr,FRONTEND,,,0,0,4096,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,0,0,0,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
rr,a,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP -1/3,1,1,0,0,0,0,0,,1,2,1,,0,,2,0,,0,INI,,,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Initializing,,2,3,0,,,,127.0.0.1:9000,,tcp,,,,,,,,0,0,0,,,0,0,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
rr,b,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,,,0,,,1,2,2,,0,,2,0,,0,,,,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:9009,,tcp,,,,,,,,0,0,0,,,0,0,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
rr,BACKEND,0,0,0,0,410,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,0,0,,1,2,0,,0,,1,0,,0,,,,,,,,,,,,,,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
src,FRONTEND,,,0,0,4096,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,3,0,,,,0,0,0,0,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,0,0,0,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
src,s1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,70,70,,1,3,1,,0,,2,0,,0,L4CON,,0,,,,,,,,,,,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,3,0,,,,127.0.0.1:9001,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
src,c,0,0,2,3,,7,0,0,,0,,0,0,0,0,no check,1,1,0,,,0,,,1,3,2,,0,,2,0,,0,,,,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:9000,,tcp,,,,,,,,0,0,0,,,0,0,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
src,BACKEND,0,0,0,0,410,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,1,0,0,,1,3,0,,0,,1,0,,0,,,,,,,,,,,,,,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,source,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,";

#[test]
fn prompted_answers_split_one_per_command_even_without_blank_lines() {
    let answers = split_prompted(PROMPTED).unwrap();
    assert_eq!(answers.len(), 12);
    assert_eq!(answers[0], "New server registered.");
    assert_eq!(answers[1], "No such server.");
    assert_eq!(answers[2], "No such backend.");
    assert_eq!(answers[3], "");
    assert_eq!(answers[4], "# name\nrr\nsrc");
    assert_eq!(answers[5], "");
    assert_eq!(answers[6], "Server deleted.");
    assert_eq!(answers[7], "Require 'backend/server'.");
    assert!(answers[8].starts_with("Unknown command"));
    assert!(answers[8].ends_with(": disconnect"));
    assert_eq!(
        answers[9],
        "'cookie' option is not accepted for dynamic server"
    );
    assert_eq!(answers[10], "No such server.");
    assert_eq!(answers[11], "2.6.12-1+deb12u4");
}

#[test]
fn semicolon_stream_cannot_be_split_on_blank_lines() {
    // Four commands, but splitting on blank lines finds two pieces: why `runtime` uses prompts.
    let pieces: Vec<&str> = SEMICOLONS.split("\n\n").filter(|p| !p.is_empty()).collect();
    assert_eq!(pieces.len(), 2);
}

#[test]
fn output_cut_before_the_last_prompt_is_refused() {
    assert_eq!(split_prompted("\n> New server registered.\n\n"), None);
    assert_eq!(split_prompted(""), None);
}

#[test]
fn refusals_are_errors_and_successes_are_not() {
    let answers = split_prompted(PROMPTED).unwrap();
    let errors: Vec<bool> = answers.iter().map(|a| is_error(a)).collect();
    assert_eq!(
        errors,
        [false, true, true, false, false, false, false, true, true, true, true, false]
    );
    assert!(is_error(
        "Server still has connections attached to it, cannot remove it."
    ));
    assert!(is_error("Only servers in maintenance mode can be deleted."));
    assert!(is_error(
        "Backend must use a dynamic load balancing to support dynamic servers."
    ));
    assert!(!is_error("1 (initial 1)"));
}

#[test]
fn show_proc_lists_master_workers_and_old_workers() {
    assert_eq!(
        parse_show_proc(SHOW_PROC).unwrap(),
        Processes {
            master: 4419,
            reloads: 3,
            failed_reloads: 0,
            workers: vec![8697],
            old_workers: vec![8572],
        }
    );
}

#[test]
fn show_proc_counts_failed_reloads() {
    let p = parse_show_proc(SHOW_PROC_FAILED).unwrap();
    assert_eq!((p.reloads, p.failed_reloads), (4, 1));
    assert_eq!(p.workers, vec![8697]);
    assert!(p.old_workers.is_empty());
}

#[test]
fn show_proc_without_master_is_refused() {
    assert!(parse_show_proc("# workers\n8697 worker 0 0d 2.6\n").is_err());
}

#[test]
fn server_states_join_state_and_stat_rows() {
    let states = merge_server_states(SERVERS_STATE, SHOW_STAT).unwrap();
    let names: Vec<(&str, &str)> = states
        .iter()
        .map(|s| (s.backend.as_str(), s.server.as_str()))
        .collect();
    assert_eq!(
        names,
        [("rr", "a"), ("rr", "b"), ("src", "s1"), ("src", "c")]
    );
    assert_eq!(
        states[0],
        ServerState {
            backend: "rr".to_string(),
            server: "a".to_string(),
            address: "127.0.0.1".to_string(),
            port: 9000,
            op_state: OpState::Running,
            admin_state: 0,
            status: "UP -1/3".to_string(),
            check_status: "INI".to_string(),
            current_sessions: 0,
            total_sessions: 0,
        }
    );
    assert!(states[1].is_maintenance());
    assert_eq!(states[1].status, "MAINT");
    assert_eq!(states[1].op_state, OpState::Stopped);
    assert_eq!(states[2].check_status, "L4CON");
    assert_eq!(states[2].status, "DOWN");
    assert_eq!(states[3].status, "no check");
    assert_eq!(
        (states[3].current_sessions, states[3].total_sessions),
        (2, 7)
    );
    assert!(!states[3].is_maintenance());
}

#[test]
fn server_states_of_a_haproxy_without_servers_are_empty() {
    let state = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port";
    let stat = SHOW_STAT.lines().next().unwrap();
    assert!(merge_server_states(state, stat).unwrap().is_empty());
}

#[test]
fn unknown_servers_state_version_is_refused() {
    assert!(merge_server_states("2\n# be_id\n", SHOW_STAT).is_err());
}

#[test]
fn files_live_in_the_given_directory() {
    let f = HaproxyFiles::new("/s/haproxy");
    assert_eq!(f.config(), Path::new("/s/haproxy/haproxy.cfg"));
    assert_eq!(f.master_socket(), Path::new("/s/haproxy/master.sock"));
    assert_eq!(f.stats_socket(), Path::new("/s/haproxy/stats.sock"));
    assert_eq!(f.pid_file(), Path::new("/s/haproxy/haproxy.pid"));
}
