"""Which URL parameters each API takes: the `params` of its REST API spec file (the union with the
newer spec files where the spec directory holds two versions) and `_common.json`'s parameters, which
every API takes. Elasticsearch answers any other parameter with 400 `request [<path>] contains
unrecognized parameter: [<name>]` (BaseRestHandler.unrecognized); path parts such as `index` count as
consumed too, as they do there. A test keeps this table equal to the spec files."""

from __future__ import annotations

COMMON_PARAMS = frozenset(['error_trace', 'filter_path', 'human', 'pretty', 'source', 'source_content_type'])

API_PARAMS: dict[str, frozenset[str]] = {
    'bulk': frozenset({
        '_source', '_source_excludes', '_source_includes', 'list_executed_pipelines', 'pipeline',
        'refresh', 'require_alias', 'require_data_stream', 'routing', 'timeout', 'type',
        'wait_for_active_shards'}),
    'cat.health': frozenset(['format', 'h', 'help', 'local', 'master_timeout', 'ts', 'v']),
    'cat.nodes': frozenset({
        'bytes', 'format', 'full_id', 'h', 'help', 'include_unloaded_segments', 'master_timeout',
        's', 'time', 'v'}),
    'ccr.delete_auto_follow_pattern': frozenset(['master_timeout']),
    'ccr.follow': frozenset(['master_timeout', 'wait_for_active_shards']),
    'ccr.follow_info': frozenset(['master_timeout']),
    'ccr.follow_stats': frozenset(['timeout']),
    'ccr.get_auto_follow_pattern': frozenset(['master_timeout']),
    'ccr.pause_auto_follow_pattern': frozenset(['master_timeout']),
    'ccr.pause_follow': frozenset(['master_timeout']),
    'ccr.put_auto_follow_pattern': frozenset(['master_timeout']),
    'ccr.resume_auto_follow_pattern': frozenset(['master_timeout']),
    'ccr.resume_follow': frozenset(['master_timeout']),
    'ccr.stats': frozenset(['master_timeout', 'timeout']),
    'ccr.unfollow': frozenset(['master_timeout']),
    'cluster.allocation_explain': frozenset({
        'current_node', 'include_disk_info', 'include_yes_decisions', 'index', 'master_timeout',
        'primary', 'shard'}),
    'cluster.get_settings': frozenset(['flat_settings', 'include_defaults', 'master_timeout', 'timeout']),
    'cluster.health': frozenset({
        'expand_wildcards', 'level', 'local', 'master_timeout', 'timeout', 'wait_for_active_shards',
        'wait_for_events', 'wait_for_no_initializing_shards', 'wait_for_no_relocating_shards',
        'wait_for_nodes', 'wait_for_status'}),
    'cluster.put_settings': frozenset(['flat_settings', 'master_timeout', 'timeout']),
    'cluster.remote_info': frozenset([]),
    'cluster.state': frozenset({
        'allow_no_indices', 'expand_wildcards', 'flat_settings', 'ignore_unavailable', 'local',
        'master_timeout', 'wait_for_metadata_version', 'wait_for_timeout'}),
    'count': frozenset({
        'allow_no_indices', 'analyze_wildcard', 'analyzer', 'default_operator', 'df',
        'expand_wildcards', 'ignore_throttled', 'ignore_unavailable', 'lenient', 'min_score',
        'preference', 'q', 'routing', 'terminate_after'}),
    'delete': frozenset({
        'if_primary_term', 'if_seq_no', 'refresh', 'routing', 'timeout', 'version', 'version_type',
        'wait_for_active_shards'}),
    'get': frozenset({
        '_source', '_source_excludes', '_source_includes', 'force_synthetic_source', 'preference',
        'realtime', 'refresh', 'routing', 'stored_fields', 'version', 'version_type'}),
    'index': frozenset({
        'if_primary_term', 'if_seq_no', 'op_type', 'pipeline', 'prefer_v2_templates', 'refresh',
        'routing', 'timeout', 'version', 'version_type', 'wait_for_active_shards'}),
    'indices.create': frozenset(['master_timeout', 'timeout']),
    'indices.delete': frozenset({
        'allow_no_indices', 'expand_wildcards', 'ignore_unavailable', 'master_timeout', 'timeout'}),
    'indices.exists': frozenset({
        'allow_no_indices', 'expand_wildcards', 'flat_settings', 'ignore_unavailable',
        'include_defaults', 'local'}),
    'indices.flush': frozenset({
        'allow_no_indices', 'expand_wildcards', 'force', 'ignore_unavailable', 'wait_if_ongoing'}),
    'indices.get': frozenset({
        'allow_no_indices', 'expand_wildcards', 'features', 'flat_settings', 'ignore_unavailable',
        'include_defaults', 'local', 'master_timeout'}),
    'indices.refresh': frozenset(['allow_no_indices', 'expand_wildcards', 'ignore_unavailable']),
    'indices.resolve_cluster': frozenset({
        'allow_no_indices', 'expand_wildcards', 'ignore_throttled', 'ignore_unavailable', 'timeout'}),
    'info': frozenset([]),
    'license.get': frozenset(['accept_enterprise', 'local']),
    'license.post': frozenset(['acknowledge', 'master_timeout', 'timeout']),
    'license.post_start_trial': frozenset(['acknowledge', 'master_timeout', 'type']),
    'ml.close_job': frozenset(['allow_no_match', 'force', 'timeout']),
    'ml.delete_datafeed': frozenset(['force']),
    'ml.delete_job': frozenset(['delete_user_annotations', 'force', 'wait_for_completion']),
    'ml.get_datafeed_stats': frozenset(['allow_no_datafeeds', 'allow_no_match']),
    'ml.get_datafeeds': frozenset(['allow_no_match', 'exclude_generated']),
    'ml.get_job_stats': frozenset(['allow_no_match']),
    'ml.get_jobs': frozenset(['allow_no_match', 'exclude_generated']),
    'ml.open_job': frozenset([]),
    'ml.put_datafeed': frozenset({
        'allow_no_indices', 'expand_wildcards', 'ignore_throttled', 'ignore_unavailable'}),
    'ml.put_job': frozenset({
        'allow_no_indices', 'expand_wildcards', 'ignore_throttled', 'ignore_unavailable'}),
    'ml.set_upgrade_mode': frozenset(['enabled', 'timeout']),
    'ml.start_datafeed': frozenset(['end', 'start', 'timeout']),
    'ml.stop_datafeed': frozenset(['allow_no_match', 'force', 'timeout']),
    'nodes.info': frozenset(['flat_settings', 'human']),
    'nodes.reload_secure_settings': frozenset(['timeout']),
    'nodes.stats': frozenset({
        'completion_fields', 'fielddata_fields', 'fields', 'groups', 'human',
        'include_segment_file_sizes', 'level', 'timeout', 'types'}),
    'search': frozenset({
        '_source', '_source_exclude', '_source_excludes', '_source_include', '_source_includes',
        'allow_no_indices', 'allow_partial_search_results', 'analyze_wildcard', 'analyzer',
        'batched_reduce_size', 'ccs_minimize_roundtrips', 'default_operator', 'df',
        'docvalue_fields', 'expand_wildcards', 'explain', 'fielddata_fields', 'from',
        'ignore_throttled', 'ignore_unavailable', 'lenient', 'max_concurrent_shard_requests',
        'min_compatible_shard_node', 'pre_filter_shard_size', 'preference', 'q', 'request_cache',
        'rest_total_hits_as_int', 'routing', 'scroll', 'search_type', 'seq_no_primary_term', 'size',
        'sort', 'stats', 'stored_fields', 'suggest_field', 'suggest_mode', 'suggest_size',
        'suggest_text', 'terminate_after', 'timeout', 'track_scores', 'track_total_hits',
        'typed_keys', 'version'}),
    'security.authenticate': frozenset([]),
    'security.change_password': frozenset(['refresh']),
    'security.create_api_key': frozenset(['refresh']),
    'security.create_cross_cluster_api_key': frozenset([]),
    'security.delete_role': frozenset(['refresh']),
    'security.delete_user': frozenset(['refresh']),
    'security.enable_user': frozenset(['refresh']),
    'security.get_api_key': frozenset(['id', 'name', 'owner', 'realm_name', 'username', 'with_limited_by']),
    'security.get_role': frozenset([]),
    'security.get_user': frozenset(['with_profile_uid']),
    'security.get_user_privileges': frozenset([]),
    'security.has_privileges': frozenset([]),
    'security.invalidate_api_key': frozenset([]),
    'security.put_role': frozenset(['refresh']),
    'security.put_user': frozenset(['refresh']),
    'security.query_api_keys': frozenset(['with_limited_by', 'with_profile_uid']),
    'security.update_cross_cluster_api_key': frozenset([]),
    'transform.delete_transform': frozenset(['delete_dest_index', 'force', 'timeout']),
    'transform.get_transform': frozenset(['allow_no_match', 'exclude_generated', 'from', 'size']),
    'transform.get_transform_stats': frozenset(['allow_no_match', 'from', 'size', 'timeout']),
    'transform.put_transform': frozenset(['defer_validation', 'timeout']),
    'transform.start_transform': frozenset(['from', 'timeout']),
    'transform.stop_transform': frozenset({
        'allow_no_match', 'force', 'timeout', 'wait_for_checkpoint', 'wait_for_completion'}),
    'xpack.info': frozenset(['accept_enterprise', 'categories', 'human']),
}

# The APIs of `routes.ROUTES_SPECIFIED_ELSEWHERE`: the `params` of their spec files (routes.SPECS_ELSEWHERE).
PARAMS_SPECIFIED_ELSEWHERE: dict[str, frozenset[str]] = {
    "ml.update_datafeed": frozenset({"allow_no_indices", "expand_wildcards", "ignore_throttled",
                                     "ignore_unavailable"}),
    "transform.update_transform": frozenset({"defer_validation", "timeout"}),
}
API_PARAMS.update(PARAMS_SPECIFIED_ELSEWHERE)

# Parameters Elasticsearch's REST handlers read that their spec files leave out.
UNSPECIFIED_PARAMS: dict[str, frozenset[str]] = {
    "ml.open_job": frozenset({"timeout"}),  # RestOpenJobAction: body or `timeout` parameter (es-facts §5)
}


def _similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance: 1 - edits / the longer length."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - previous[-1] / longest


def unrecognized(path: str, unknown: set[str], allowed: set[str]) -> str:
    """Elasticsearch's message (BaseRestHandler.unrecognized): each unknown name, sorted, with the
    allowed names more than half similar, most similar first."""
    parts = []
    for name in sorted(unknown):
        scored = sorted(((_similarity(name, c), c) for c in allowed), key=lambda sc: (-sc[0], sc[1]))
        close = [c for score, c in scored if score > 0.5]
        text = f"[{name}]"
        if close:
            text += " -> did you mean " + (f"[{close[0]}]" if len(close) == 1 else "any of [" + ", ".join(close) + "]") + "?"
        parts.append(text)
    plural = "s" if len(unknown) > 1 else ""
    return f"request [{path}] contains unrecognized parameter{plural}: " + ", ".join(parts)


def check(api: str, path: str, template_parts: set[str], given: set[str]) -> str | None:
    """The 400 message when `given` has a parameter the API does not take, else None (an API the
    table does not know takes anything)."""
    if api not in API_PARAMS:
        return None
    allowed = API_PARAMS[api] | UNSPECIFIED_PARAMS.get(api, frozenset()) | COMMON_PARAMS | template_parts
    unknown = given - allowed
    return unrecognized(path, unknown, allowed) if unknown else None
