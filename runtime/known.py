"""What OpenSIPS (and Kamailio) know that we check scripts against: global parameter names,
and which module a function or pseudo-variable comes with (for "missing loadmodule?" and
"module 'x' is not implemented" diagnostics)."""

CORE_PARAMS = frozenset("""
socket listen alias advertised_address advertised_port auto_aliases udp_workers tcp_workers
timer_workers auto_scaling_profile auto_scaling_cycle debug_mode log_level log_prefix log_stdout
stderror_enabled syslog_enabled log_event_enabled stderror_level_filter syslog_level_filter
log_event_level_filter stderror_log_format syslog_log_format log_json_buf_size log_msg_buf_size
syslog_facility log_facility syslog_name log_name log_stderror xlog_level xlog_print_level
xlog_buf_size xlog_force_color pv_print_buf_size enable_asserts abort_on_assert mpath chroot
workdir wdir dns rev_dns dns_try_ipv6 dns_try_naptr dns_use_search_list dns_retr_time dns_retr_no
dns_servers_no disable_dns_failover disable_dns_blacklist disable_stateless_fwd
disable_503_translation disable_core_dump dst_blacklist check_via sip_warning server_signature
mhomed tcp_accept_aliases tcp_keepalive server_header user_agent_header max_while_loops maxbuffer
open_files_limit query_buffer_size query_flush_time db_max_async_connections db_default_url
db_version_table exec_msg_threshold execmsgthreshold exec_dns_threshold execdnsthreshold
tcp_threshold tcpthreshold event_shm_threshold event_pkg_threshold tcp_connect_timeout
tcp_connection_lifetime tcp_socket_backlog tcp_max_connections tcp_max_msg_time tcp_keepcount
tcp_keepidle tcp_keepinterval tcp_parallel_read_on_workers tcp_no_new_conn_bflag
tcp_no_new_conn_rplflag poll_method tos mcast_loopback mcast_ttl memlog mem_log memdump mem_dump
shm_memlog_size mem_warming mem_warming_enabled mem_warming_pattern_file mem_warming_percentage
shm_hash_split_percentage shm_secondary_hash_size restart_persistency_cache_file
restart_persistency_size mem-group tcp_threads
""".split())

# accepted for old (1.x/2.x) scripts; most have no effect in a single-process Python proxy
OLD_PARAMS = frozenset("""
children fork debug port tcp_children disable_tcp disable_tls tls_port_no tls_method
tls_verify_client tls_verify_server tls_require_client_certificate tls_certificate
tls_private_key tls_ca_list tls_ciphers_list tls_handshake_timeout tls_send_timeout
tls_max_connections tls_threads_mode enable_tls user group uid gid avp_aliases bin_listen
bin_children xlog_default_level tcp_listen_backlog memdbg use_dns_cache use_dns_failover
dns_srv_lb reply_to_via tcp_rd_buf_size tcp_async tcp_conn_wq_max tcp_crlf_ping tcp_keepintvl
tcp_keepcnt mlock_pages mem_join shm_force_alloc socket_workers tcp_accept_no_cl enable_sctp
loadpath
""".split())

KAMAILIO_PARAMS = frozenset("""
flags avpflags cfgengine return_mode async_workers corelog latency_limit_action
latency_limit_db latency_log sip_parser_log sip_parser_mode udp_mtu udp_mtu_try_proto
tcp_max_connections tcp_accept_haproxy kemi.onsend_route_callback
""".split())

_FUNCTIONS_BY_MODULE = {
    "tm": "t_relay t_newtran t_check_trans t_reply t_reply_with_body t_on_failure t_on_reply "
          "t_on_branch t_check_status t_was_cancelled t_is_canceled t_local_replied "
          "t_cancel_branch t_add_hdrs t_replicate t_flush_flags t_inject_branches "
          "t_wait_for_new_branches t_release t_set_fr t_reset_fr t_precheck_trans t_anycast_replicate",
    "rr": "loose_route record_route record_route_preset add_rr_param check_route_param "
          "is_direction",
    "sl": "sl_send_reply sl_reply_error",
    "signaling": "send_reply",
    "maxfwd": "mf_process_maxfwd_header is_maxfwd_lt",
    "sipmsgops": "is_method has_totag has_body is_present_hf append_hf insert_hf remove_hf "
                 "remove_hf_re remove_hf_glob append_to_reply append_urihf ruri_has_param "
                 "ruri_add_param ruri_del_param is_uri_user_e164 sipmsg_validate "
                 "change_reply_status codec_exists codec_delete codec_move_up "
                 "codec_move_down stream_exists stream_delete list_hdr_has_option",
    "textops": "search search_body search_append replace replace_all replace_body "
               "replace_body_all subst subst_uri subst_user subst_body append_time",
    "registrar": "save lookup registered is_registered remove is_contact_registered "
                 "is_ip_registered add_sock_hdr",
    "usrloc": "ul_add",
    "auth": "www_challenge proxy_challenge consume_credentials pv_www_authorize "
            "pv_proxy_authorize append_rpid_hf is_rpid_user_e164",
    "auth_db": "www_authorize proxy_authorize db_does_uri_exist db_is_to_authorized "
               "db_is_from_authorized db_get_auth_id",
    "nathelper": "nat_uac_test fix_nated_contact fix_nated_register fix_nated_sdp "
                 "add_rcv_param",
    "dialog": "create_dialog validate_dialog fix_route_dialog match_dialog set_dlg_profile "
              "unset_dlg_profile is_in_profile get_profile_size set_dlg_flag is_dlg_flag_set "
              "store_dlg_value fetch_dlg_value dlg_on_hangup dlg_on_answer dlg_on_timeout",
    "mediaproxy": "engage_media_proxy use_media_proxy end_media_session",
    "rtpproxy": "rtpproxy_offer rtpproxy_answer rtpproxy_unforce rtpproxy_engage "
                "force_rtp_proxy unforce_rtp_proxy engage_rtp_proxy start_recording "
                "rtpproxy_start_recording rtpproxy_stream2uac rtpproxy_stream2uas "
                "rtpproxy_stop_stream2uac rtpproxy_stop_stream2uas rtpproxy_stats "
                "rtpproxy_manage rtpproxy_destroy set_rtp_proxy_set",
    "rtpengine": "rtpengine_offer rtpengine_answer rtpengine_delete rtpengine_manage "
                 "rtpengine_use_set set_rtpengine_set rtpengine_query "
                 "rtpengine_start_recording rtpengine_stop_recording rtpengine_play_media "
                 "rtpengine_stop_media rtpengine_block_media rtpengine_unblock_media "
                 "rtpengine_block_dtmf rtpengine_unblock_dtmf rtpengine_start_forwarding "
                 "rtpengine_stop_forwarding rtpengine_play_dtmf",
    "nat_traversal": "client_nat_test fix_contact nat_keepalive",
    "rtp_relay": "rtp_relay_engage",
    "dispatcher": "ds_select_dst ds_select_domain ds_next_dst ds_next_domain ds_mark_dst "
                  "ds_is_in_list ds_count ds_is_from_list ds_reload ds_push_script_attrs "
                  "ds_get_script_attrs",
    "drouting": "do_routing use_next_gw next_routing is_from_gw goes_to_gw route_to_gw "
                "route_to_carrier dr_is_gw dr_match dr_disable",
    "load_balancer": "lb_start lb_next load_balance lb_start_or_next lb_is_started lb_reset "
                     "lb_disable_dst lb_disable lb_is_destination lb_count_call",
    "acc": "do_accounting acc_log_request acc_db_request drop_accounting acc_new_leg",
    "permissions": "check_source_address check_address get_source_group allow_routing "
                   "allow_register allow_uri",
    "domain": "is_from_local is_uri_host_local is_domain_local",
    "alias_db": "alias_db_lookup alias_db_find",
    "dialplan": "dp_translate dp_match dp_replace",
    "presence": "handle_publish handle_subscribe pres_update_watchers pres_refresh_watchers",
    "rls": "rls_handle_subscribe rls_handle_notify rls_update_subs",
    "pua": "pua_update_contact",
    "pua_usrloc": "pua_set_publish",
    "pua_dialoginfo": "dialoginfo_set",
    "sst": "sstCheckMin",
    "xcap_server": "xcaps_put xcaps_get xcaps_del",
    "cfgutils": "rand_event rand_set_prob sleep usleep check_time_rec get_static_lock "
                "release_static_lock get_accurate_time shuffle_avps abort",
    "exec": "exec exec_msg exec_dset exec_avp exec_getenv",
    "sqlops": "sql_query sql_query_one sql_select sql_insert sql_update sql_delete "
              "sql_replace sql_avp_load sql_avp_store sql_avp_delete",
    "avpops": "avp_db_query avp_db_load avp_db_store avp_db_delete avp_check avp_copy "
              "avp_delete avp_pushto avp_op avp_subst is_avp_set avp_print",
    "uac": "uac_replace_from uac_restore_from uac_replace_to uac_restore_to uac_auth",
    "path": "add_path add_path_received",
    "uri": "does_uri_exist check_to check_from db_check_to db_check_from is_user",
    "topology_hiding": "topology_hiding topology_hiding_match",
    "siptrace": "sip_trace trace_dialog",
    "pike": "pike_check_req",
    "uac_redirect": "get_redirects set_deny_filter set_accept_filter",
    "lcr": "load_gws load_gws_from_grp next_gw from_gw from_gw_grp to_gw load_contacts "
           "next_contacts",
    "enum": "enum_query enum_pv_query enum_fquery i_enum_query isn_query is_from_user_enum",
    "cachedb_local": "cache_remove_chunk",
    "sanity": "sanity_check",
    "rest_client": "rest_get rest_post rest_put rest_append_hf rest_init_client_tls",
    "json": "json_link",
    "options": "options_reply",
}
MODULE_OF_FUNCTION = {f: m for m, fs in _FUNCTIONS_BY_MODULE.items() for f in fs.split()}

_PV_PREFIXES = (("T_", "tm"), ("DLG_", "dialog"), ("dlg_val", "dialog"), ("shv", "cfgutils"),
                ("env", "cfgutils"), ("RANDOM", "cfgutils"), ("ctime", "cfgutils"),
                ("rr_params", "rr"), ("acc_", "acc"), ("json", "json"), ("sht", "htable"),
                ("ulc", "usrloc"), ("bavp", "tm"), ("tm.", "tm"), ("rtpstat", "rtpengine"),
                ("rtpquery", "rtpengine"), ("keepalive.", "nat_traversal"),
                ("source_uri", "nat_traversal"), ("nat_traversal.", "nat_traversal"),
                ("rtp_relay", "rtp_relay"), ("xcapuri", "xcap_server"))


def MODULE_OF_PV(name: str):
    for prefix, mod in _PV_PREFIXES:
        if name.startswith(prefix):
            return mod
    return None
