{#- Incremental builds driven by what was ingested: a watermark on ingestion, not on event time.

    Every staged event carries `ingest_seq`, a number that orders its ingestion, such that the
    rows below a build's `high` are the same set for the whole build however long ingestion
    goes on beside it:
    - PostgreSQL: the id of the transaction that landed the row (pg_current_xact_id(), the
      column's default). A build takes as its high the oldest transaction still running when
      it starts (pg_snapshot_xmin): every transaction below it has committed or aborted for good.
    - DuckDB over the lake: the number of the build that first saw the Parquet file. A build
      registers the live files present when it starts in `lake_files`; staging reads registered
      files only, so a file that appears during the build waits for the next one. Compaction
      replaces files by new ones atomically through the hour's manifest; registration drops the
      replaced ones and gives the new ones the largest number of their inputs (below).
    - BigQuery: the number of the load that loaded the event's hour (`antenna-elt load
      bigquery` records each load in `lake_loads`); an hour is loaded whole, so every window
      of a loaded hour counts as touched.

    A build records its high first (on-run-start: start_ingest_build). Each incremental model
    - reads the high it was last built to, `low` (0 when never built or on --full-refresh);
    - takes as its own high the build's high or, when it reads other incremental models, the
      smallest high they were built to (what they hold);
    - rebuilds every window (or hour) touched by events with low <= ingest_seq < high, whatever
      their event time, from all the events below high in that window;
    - and records high as its watermark in the same transaction (post-hook).
    So an incremental build equals a full refresh on the same rows under any arrival order,
    partition skew, lateness, or a build running while ingestion goes on. -#}


{#- The project's own bookkeeping tables live in the target schema: ingest_builds (the high
    of each build), ingest_watermarks (low and high of each incremental model) and, on DuckDB,
    lake_files (the Parquet files each build registered). -#}
{% macro ingest_state_relation(name) -%}
    {{ return(api.Relation.create(database=target.get('database'), schema=target.schema, identifier=name)) }}
{%- endmacro %}


{#- on-run-start: create the bookkeeping tables and record this build's high. -#}
{% macro start_ingest_build() -%}
    {{ return(adapter.dispatch('start_ingest_build', 'antenna_elt')()) }}
{%- endmacro %}

{% macro default__start_ingest_build() -%}
    {%- set builds = ingest_state_relation('ingest_builds') -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    create schema if not exists {{ target.schema }};
    create table if not exists {{ builds }} (
        invocation_id varchar(64) not null,
        high_seq bigint not null,
        started_epoch bigint not null
    );
    create table if not exists {{ watermarks }} (
        model_name varchar(256) primary key,
        low_seq bigint not null,
        high_seq bigint not null,
        invocation_id varchar(64) not null,
        built_at timestamp not null
    );
    delete from {{ builds }} where started_epoch < {{ epoch_seconds(dbt.current_timestamp()) }} - 7 * 86400;
    insert into {{ builds }} (invocation_id, high_seq, started_epoch)
    select '{{ invocation_id }}', {{ ingest_current_high() }}, {{ ingest_build_started_epoch() }};
{%- endmacro %}

{#- DuckDB over the lake: register the lake's live files (the rule of
    ingest/antenna_elt/sinks/lake/manifests.py: every file a closed hour's manifest lists, and
    every file the ingestor named that no manifest lists as replaced; a compacted file is live
    only once its manifest version lists it). A file seen for the first time gets this build's
    number, except a compacted file whose inputs were all registered: it keeps the largest of
    their numbers (its rows are theirs; a model that had seen them all has nothing to rebuild,
    any other model rebuilds the hours they touch). Files no longer live (replaced by
    compaction) leave the registry, so the raw source never reads a file and its replacement. -#}
{% macro duckdb__start_ingest_build() -%}
    {%- set files = ingest_state_relation('lake_files') -%}
    {%- set root = lake_root() -%}
    create schema if not exists {{ target.schema }};
    create table if not exists {{ files }} (
        file_path varchar primary key,
        ingest_seq bigint not null,
        registered_at timestamp not null
    );
    create or replace temporary table lake_files_found as
    with

    found as (

        select file as file_path
        from glob('{{ root }}/device_usage/*/*/*/*/*.parquet')

    ),

    manifests as (

        {#- no manifest yet (no hour closed): read_json gives a lone column `empty`, so the
            typed empty row set names the columns (as the lake source does) -#}
        select manifests_read.files, manifests_read.replaced
        from (
            select *
            from read_json('{{ root }}/_manifests/closed_hours/device_usage/*.json', allow_empty = true,
                columns = struct_pack(files := 'struct(path varchar, inputs varchar[])[]', replaced := 'varchar[]'))
            union all by name
            select
                cast(null as struct(path varchar, inputs varchar[])[]) as files,
                cast(null as varchar[]) as replaced
            where false
        ) as manifests_read

    ),

    listed_files as (

        select unnest(manifests.files) as listed
        from manifests

    ),

    listed as (

        select
            '{{ root }}/' || listed_files.listed.path as file_path,
            listed_files.listed.inputs as inputs
        from listed_files

    ),

    replaced as (

        select distinct '{{ root }}/' || unnest(manifests.replaced) as file_path
        from manifests

    )

    select
        found.file_path,
        listed.inputs,
        (
            listed.file_path is not null
            or (
                not starts_with(parse_filename(found.file_path), 'compacted-')
                and found.file_path not in (select replaced.file_path from replaced)
            )
        ) as is_live
    from found
    left join listed on found.file_path = listed.file_path;
    insert into {{ files }} (file_path, ingest_seq, registered_at)
    with

    next_seq as (

        select coalesce(max(ingest_seq), 0) + 1 as ingest_seq
        from {{ files }}

    ),

    new_files as (

        select found.file_path, found.inputs
        from lake_files_found as found
        where found.is_live and found.file_path not in (select file_path from {{ files }})

    ),

    new_inputs as (

        select new_files.file_path, '{{ root }}/' || unnest(new_files.inputs) as input_path
        from new_files

    ),

    inherited as (

        select
            new_inputs.file_path,
            count(*) = count(known.file_path) as all_known,
            max(known.ingest_seq) as ingest_seq
        from new_inputs
        left join {{ files }} as known on new_inputs.input_path = known.file_path
        group by 1

    )

    select
        new_files.file_path,
        case
            when inherited.all_known then inherited.ingest_seq
            else (select next_seq.ingest_seq from next_seq)
        end,
        current_timestamp
    from new_files
    left join inherited on new_files.file_path = inherited.file_path;
    delete from {{ files }}
    where file_path in (select found.file_path from lake_files_found as found where not found.is_live);
    drop table lake_files_found;
    {{ default__start_ingest_build() }}
{%- endmacro %}


{#- Spark over the lake: the lake's folders as external Parquet tables in the raw schema
    (var raw_schema: one per lake), its closed hours' published manifests as an external JSON
    table, and views `device_usage` and `device_usage_rejects` that the source `raw` reads.
    Each build snapshots the lake's live files in `<raw schema>.lake_live_files` (the rule of
    ingest/antenna_elt/sinks/lake/manifests.py, as on DuckDB: every file a closed hour's
    manifest lists under `files`, and every file the ingestor named that no manifest lists
    under `replaced`; a compacted file is live only once listed; paths compared relative to
    the lake root, since Spark names files by URI) and registers the live files it has not seen
    in `<raw schema>.lake_files` with its number (a registry every target on the metastore
    shares: numbers only grow, so each target's own watermarks stay valid). `device_usage`
    reads the registered files that are live: during compaction's grace period the replaced
    files are still on disk, and are never read beside the file that replaced them. A
    compacted file gets the number of the first build that sees it live, so the models
    rebuild its hours (the same rows). Spark SQL runs one statement at a time, and its Parquet
    tables take no delete or update: the registry is append-only, the snapshot overwritten. -#}
{% macro spark__start_ingest_build() -%}
    {%- set raw = var('raw_schema') -%}
    {%- set lake = spark_lake_location() -%}
    {%- set files = api.Relation.create(schema=raw, identifier='lake_files') -%}
    {%- set live = api.Relation.create(schema=raw, identifier='lake_live_files') -%}
    {%- set manifests = api.Relation.create(schema=raw, identifier='lake_closed_hour_manifests') -%}
    {%- set manifests_location = lake ~ '/_manifests/closed_hours/device_usage' -%}
    {#- the lake path of a file: from its table folder on (`device_usage/year=/month=/day=/hour=/<name>`) -#}
    {%- set lake_path = "regexp_extract(found.file_path, '(device_usage/[^/]+/[^/]+/[^/]+/[^/]+/[^/]+)$', 1)" -%}
    {%- set statements = [
        'create schema if not exists ' ~ target.schema,
        'create schema if not exists ' ~ raw,
        'create table if not exists ' ~ raw ~ '.lake_device_usage (' ~ spark_lake_columns('device_usage') ~ ")
            using parquet options (recursiveFileLookup 'true') location '" ~ lake ~ "/device_usage'",
        'alter table ' ~ raw ~ ".lake_device_usage set location '" ~ lake ~ "/device_usage'",
        'refresh table ' ~ raw ~ '.lake_device_usage',
        'create table if not exists ' ~ raw ~ '.lake_device_usage_rejects (' ~ spark_lake_columns('device_usage_rejects') ~ ")
            using parquet options (recursiveFileLookup 'true') location '" ~ lake ~ "/device_usage_rejects'",
        'alter table ' ~ raw ~ ".lake_device_usage_rejects set location '" ~ lake ~ "/device_usage_rejects'",
        'refresh table ' ~ raw ~ '.lake_device_usage_rejects',
        'create table if not exists ' ~ manifests ~ " (files array<struct<path: string, inputs: array<string>>>, replaced array<string>)
            using json options (multiLine 'true', mode 'FAILFAST', pathGlobFilter '*.json')
            location '" ~ manifests_location ~ "'",
        'alter table ' ~ manifests ~ " set location '" ~ manifests_location ~ "'",
        'refresh table ' ~ manifests,
        'create table if not exists ' ~ live ~ ' (file_path string) using parquet',
        'insert overwrite table ' ~ live ~ '
            select found.file_path
            from (select distinct _metadata.file_path as file_path from ' ~ raw ~ '.lake_device_usage) as found
            left join (
                select distinct listed_files.listed.path
                from (select explode(manifests.files) as listed from ' ~ manifests ~ ' as manifests) as listed_files
            ) as listed
                on ' ~ lake_path ~ ' = listed.path
            left join (
                select distinct replaced_files.replaced
                from (select explode(manifests.replaced) as replaced from ' ~ manifests ~ ' as manifests) as replaced_files
            ) as replaced
                on ' ~ lake_path ~ " = replaced.replaced
            where
                listed.path is not null
                or (
                    regexp_extract(found.file_path, '([^/]+)$', 1) not like 'compacted-%'
                    and replaced.replaced is null
                )",
        'create table if not exists ' ~ files ~ ' (file_path string, ingest_seq bigint, registered_at timestamp) using parquet',
        'insert into ' ~ files ~ '
            select found.file_path, registered.next_seq, current_timestamp()
            from ' ~ live ~ ' as found
            cross join (select coalesce(max(ingest_seq), 0) + 1 as next_seq from ' ~ files ~ ') as registered
            left anti join ' ~ files ~ ' as known
                on found.file_path = known.file_path',
        'create or replace view ' ~ raw ~ '.device_usage as
            select
                events.event_time, events.id, events.antenna_id, events.bytes, events.app,
                events.kafka_topic, events.kafka_partition, events.kafka_offset, events.ingested_at,
                files.ingest_seq
            from (select *, _metadata.file_path as file_path from ' ~ raw ~ '.lake_device_usage) as events
            inner join ' ~ files ~ ' as files
                on events.file_path = files.file_path
            left semi join ' ~ live ~ ' as live
                on events.file_path = live.file_path',
        'create or replace view ' ~ raw ~ '.device_usage_rejects as
            select kafka_topic, kafka_partition, kafka_offset, raw_value, reason, ingested_at
            from ' ~ raw ~ '.lake_device_usage_rejects',
        'create table if not exists ' ~ ingest_state_relation('ingest_builds') ~ '
            (invocation_id string, high_seq bigint, started_epoch bigint) using parquet',
        'create table if not exists ' ~ ingest_state_relation('ingest_watermarks') ~ '
            (model_name string, low_seq bigint, high_seq bigint, invocation_id string, built_at timestamp) using parquet',
    ] -%}
    {%- if execute -%}
        {%- for statement in statements -%}
            {%- do run_query(statement) -%}
        {%- endfor -%}
    {%- endif -%}
    insert into {{ ingest_state_relation('ingest_builds') }}
    select '{{ invocation_id }}', {{ ingest_current_high() }}, {{ ingest_build_started_epoch() }}
{%- endmacro %}


{#- The columns of the lake's Parquet files (ingest/antenna_elt/schema.py, in_lake columns;
    a unit test compares them). -#}
{% macro spark_lake_columns(table) -%}
    {%- if table == 'device_usage' -%}
    event_time timestamp, id string, antenna_id string, bytes bigint, app string,
    kafka_topic string, kafka_partition int, kafka_offset bigint, ingested_at timestamp
    {%- else -%}
    kafka_topic string, kafka_partition int, kafka_offset bigint, raw_value binary, reason string,
    ingested_at timestamp
    {%- endif -%}
{%- endmacro %}


{#- The lake as Spark names it (s3:// is s3a:// to Hadoop). -#}
{% macro spark_lake_location() -%}
    {%- set lake = env_var('ANTENNA_ELT_LAKE', '.stack/lake') -%}
    {{ return('s3a://' ~ lake[5:] if lake.startswith('s3://') else lake) }}
{%- endmacro %}


{#- When this build started (epoch seconds): rendered with the hook, so before any of its SQL
    runs (before the lake's files are listed). -#}
{% macro ingest_build_started_epoch() -%}
    {{ return(modules.datetime.datetime.now(modules.pytz.utc).timestamp() | int) }}
{%- endmacro %}


{#- Whether the target can tell its ingestion sequence yet (DuckDB: the lake's files were
    registered by a build; BigQuery: a load was recorded). -#}
{% macro ingest_sequence_exists() -%}
    {{ return(adapter.dispatch('ingest_sequence_exists', 'antenna_elt')()) }}
{%- endmacro %}

{% macro default__ingest_sequence_exists() -%}
    {{ return(true) }}
{%- endmacro %}

{% macro duckdb__ingest_sequence_exists() -%}
    {%- set files = ingest_state_relation('lake_files') -%}
    {{ return(adapter.get_relation(files.database, files.schema, files.identifier) is not none) }}
{%- endmacro %}

{% macro bigquery__ingest_sequence_exists() -%}
    {%- set loads = api.Relation.create(database=target.database, schema=var('raw_schema'), identifier='lake_loads') -%}
    {{ return(adapter.get_relation(loads.database, loads.schema, loads.identifier) is not none) }}
{%- endmacro %}


{#- SQL giving the high a build starting now may use. -#}
{% macro ingest_current_high() -%}
    {{ return(adapter.dispatch('ingest_current_high', 'antenna_elt')()) }}
{%- endmacro %}

{% macro default__ingest_current_high() -%}
    cast(cast(pg_snapshot_xmin(pg_current_snapshot()) as text) as bigint)
{%- endmacro %}

{% macro duckdb__ingest_current_high() -%}
    (select coalesce(max(ingest_seq), 0) + 1 from {{ ingest_state_relation('lake_files') }})
{%- endmacro %}

{% macro spark__ingest_current_high() -%}
    (select coalesce(max(ingest_seq), 0) + 1 from {{ var('raw_schema') }}.lake_files)
{%- endmacro %}

{% macro bigquery__ingest_current_high() -%}
    {#- the loads `antenna-elt load bigquery` recorded next to the raw table -#}
    (select coalesce(max(load_seq), 0) + 1
    from {{ api.Relation.create(database=target.get('database'), schema=var('raw_schema'), identifier='lake_loads') }})
{%- endmacro %}


{#- The staged rows' ingest_seq: a column of the raw table (PostgreSQL) or of the lake's
    source (DuckDB: its registered file's build); on BigQuery the load_seq of the hour's
    last load, from the loads table `antenna-elt load bigquery` keeps beside the events. -#}
{% macro staged_ingest_seq(relation) -%}
    {{ return(adapter.dispatch('staged_ingest_seq', 'antenna_elt')(relation)) }}
{%- endmacro %}

{% macro default__staged_ingest_seq(relation) -%}
    cast({{ relation }}.ingest_seq as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro bigquery__staged_ingest_seq(relation) -%}
    (
        select max(loads.load_seq)
        from {{ api.Relation.create(database=target.database, schema=var('raw_schema'), identifier='lake_loads') }} as loads
        where loads.hour_start = timestamp_trunc({{ relation }}.event_time, hour)
    )
{%- endmacro %}


{#- The lake's root directory (DuckDB reads it directly). -#}
{% macro lake_root() -%}
    {{ return(env_var('ANTENNA_ELT_LAKE', '.stack/lake') | replace('file://', '')) }}
{%- endmacro %}


{#- A dict for this invocation's compile-time results, kept in `graph` (one dict for every
    node of an invocation). The runner's dbt process stays up and runs invocation after
    invocation on one parsed manifest, whose `graph` outlives each of them: the dict starts
    empty for each invocation instead of growing for weeks. -#}
{% macro ingest_invocation_cache(name) -%}
    {%- set key = '_antenna_elt_' ~ name -%}
    {%- if (graph.get(key) or {}).get('invocation_id') != invocation_id -%}
        {%- do graph.update({key: {'invocation_id': invocation_id, 'entries': {}}}) -%}
    {%- endif -%}
    {{ return(graph[key]['entries']) }}
{%- endmacro %}


{#- A single value from a query at compile time, or `default`. -#}
{% macro _ingest_scalar(sql, default=none) -%}
    {%- if not execute -%}{{ return(default) }}{%- endif -%}
    {%- set result = run_query(sql) -%}
    {%- if result is none or result.rows | length == 0 or result.rows[0][0] is none -%}
        {{ return(default) }}
    {%- endif -%}
    {{ return(result.rows[0][0] | int) }}
{%- endmacro %}


{#- This build's high, recorded by start_ingest_build (or computed now for commands that run
    no hooks, such as `dbt compile`). The var `ingest_high_seq` pins it (unit tests). -#}
{% macro ingest_build_high() -%}
    {%- if var('ingest_high_seq', none) is not none -%}{{ return(var('ingest_high_seq') | int) }}{%- endif -%}
    {%- if not execute -%}{{ return(0) }}{%- endif -%}
    {%- set builds = ingest_state_relation('ingest_builds') -%}
    {%- set found = adapter.get_relation(builds.database, builds.schema, builds.identifier) -%}
    {%- set high = none -%}
    {%- if found is not none -%}
        {%- set high = _ingest_scalar("select max(high_seq) from " ~ builds ~ " where invocation_id = '" ~ invocation_id ~ "'") -%}
    {%- endif -%}
    {%- if high is none and ingest_sequence_exists() -%}
        {%- set high = _ingest_scalar("select " ~ ingest_current_high(), 0) -%}
    {%- endif -%}
    {#- nothing ingested was ever registered (a first `dbt compile`, sqlfluff): everything -#}
    {{ return(high if high is not none else 4611686018427387904) }}
{%- endmacro %}


{#- The high a model was last built to, or `default` when it has none. -#}
{% macro ingest_watermark(model_name, default=none) -%}
    {%- if not execute -%}{{ return(default) }}{%- endif -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    {%- if adapter.get_relation(watermarks.database, watermarks.schema, watermarks.identifier) is none -%}
        {{ return(default) }}
    {%- endif -%}
    {{ return(_ingest_scalar(_ingest_watermark_query(watermarks, model_name, 'high_seq'), default)) }}
{%- endmacro %}


{#- A model's recorded watermark: its newest row (one row a model where the engine upserts;
    on Spark the table is append-only). -#}
{% macro _ingest_watermark_query(watermarks, model_name, column) -%}
    {{ return("select " ~ column ~ " from " ~ watermarks ~ " where model_name = '" ~ model_name ~ "' order by built_at desc, high_seq desc limit 1") }}
{%- endmacro %}


{#- The incremental models the current model reads. -#}
{% macro ingest_parents() -%}
    {%- set parents = [] -%}
    {%- set depends_on = model.get('depends_on') or {} -%}
    {%- for node_id in depends_on.get('nodes', []) if node_id.startswith('model.') -%}
        {%- set node = (graph.get('nodes') or {}).get(node_id) -%}
        {%- if node is not none and node.config.materialized == 'incremental' -%}
            {%- do parents.append(node.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(parents) }}
{%- endmacro %}


{#- The high of the current model: what its inputs hold. Models that read incremental models
    hold what the least advanced of those holds; the others read staging up to the build's
    high. -#}
{% macro ingest_high() -%}
    {%- set build_high = ingest_build_high() -%}
    {%- if var('ingest_high_seq', none) is not none -%}{{ return(build_high) }}{%- endif -%}
    {%- set highs = [] -%}
    {%- for parent in ingest_parents() -%}
        {%- set parent_high = ingest_watermark(parent) -%}
        {%- if parent_high is none -%}
            {#- built before watermarks existed: it holds what staging held then, at most -#}
            {%- do highs.append(build_high) -%}
        {%- else -%}
            {%- do highs.append(parent_high) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(highs | min if highs else build_high) }}
{%- endmacro %}


{#- What an incremental run of the current model rebuilds: a dict with `low`, `high` and
    `ranges`, the [start, end) epoch-second ranges of the buckets of `grain` seconds touched
    by the events ingested since the model's last build (none: everything, on a full build;
    []: nothing). `after` and `to_hour_end` widen each touched bucket to the buckets whose
    rows depend on it (e.g. a device's connection state over the following minutes). The var
    `ingest_touched_ranges` pins the ranges (unit tests). -#}
{% macro ingest_increment(grain, after=0, to_hour_end=false, max_ranges=64) -%}
    {%- set staged = ref('stg_raw__device_usage') -%}
    {%- set high = ingest_high() -%}
    {%- if not is_incremental() -%}
        {{ return({'low': 0, 'high': high, 'ranges': none}) }}
    {%- endif -%}
    {%- set low = ingest_watermark(this.identifier, 0) -%}
    {%- if var('ingest_touched_ranges', none) is not none -%}
        {{ return({'low': low, 'high': high, 'ranges': var('ingest_touched_ranges')}) }}
    {%- endif -%}
    {%- set ranges = ingest_touched_ranges(grain, low, high, after, to_hour_end, max_ranges) -%}
    {%- do log(this.identifier ~ ": ingest_seq [" ~ low ~ ", " ~ high ~ ") touched " ~ (ranges | length) ~ " range(s) of " ~ grain ~ " s buckets", info=false) -%}
    {{ return({'low': low, 'high': high, 'ranges': ranges}) }}
{%- endmacro %}


{#- The coalesced [start, end) ranges of the buckets touched by events with
    low <= ingest_seq < high, at most `max_ranges` of them (neighbours are merged: rebuilding
    a bucket nothing touched gives what it held, so a wider range is only more work). -#}
{% macro ingest_touched_ranges(grain, low, high, after=0, to_hour_end=false, max_ranges=64, staged=none) -%}
    {%- if not execute or low >= high -%}{{ return([]) }}{%- endif -%}
    {#- the staged rows below a high never change, so the ranges of one (low, high) are the same
        for every model and test of an invocation that asks: computed once (a scan of the
        increment each time made a cycle's ~100 touched-scope tests cost ~100 scans). dbt
        hands every node of an invocation the same `graph` dict; the cache lives there. -#}
    {%- set cache_key = [grain, low, high, after, to_hour_end, max_ranges, staged | string] | join('|') -%}
    {%- set cache = ingest_invocation_cache('touched_ranges') -%}
    {%- if cache_key in cache -%}{{ return(cache[cache_key]) }}{%- endif -%}
    {%- set hour_end = bucket_epoch('bucket_start', 3600) ~ ' + 3600' if to_hour_end else 'bucket_start + ' ~ grain -%}
    {%- set sql -%}
        with

        increment as (

            {{ ingest_increment_events(low, high, staged) }}

        ),

        buckets as (

            select distinct {{ bucket_epoch('event_epoch', grain) }} as bucket_start
            from increment

        ),

        intervals as (

            select
                bucket_start as range_start,
                greatest(bucket_start + {{ grain }}, bucket_start + {{ after }}, {{ hour_end }}) as range_end

            from buckets

        ),

        flagged as (

            select
                range_start,
                range_end,
                case
                    when range_start <= max(range_end) over (
                        order by range_start rows between unbounded preceding and 1 preceding
                    ) then 0
                    else 1
                end as starts_island

            from intervals

        ),

        islands as (

            select
                range_start,
                range_end,
                sum(starts_island) over (order by range_start rows between unbounded preceding and current row) as island

            from flagged

        )

        select
            min(range_start) as range_start,
            max(range_end) as range_end

        from islands
        group by island
        order by 1
    {%- endset -%}
    {%- set result = run_query(sql) -%}
    {%- set ranges = [] -%}
    {%- for row in result.rows -%}
        {%- do ranges.append([row[0] | int, row[1] | int]) -%}
    {%- endfor -%}
    {%- if ranges | length > max_ranges -%}
        {#- merge neighbours into max_ranges groups of consecutive ranges -#}
        {%- set merged = [] -%}
        {%- set per_group = ((ranges | length) / max_ranges) | round(0, 'ceil') | int -%}
        {%- for group in ranges | batch(per_group) -%}
            {%- do merged.append([group[0][0], group[-1][1]]) -%}
        {%- endfor -%}
        {%- set ranges = merged -%}
    {%- endif -%}
    {%- do cache.update({cache_key: ranges}) -%}
    {{ return(ranges) }}
{%- endmacro %}


{#- The events ingested with low <= ingest_seq < high, as a query with an `event_epoch` column
    whose cost follows the size of the increment, not of the history. `staged`: the staged
    events' relation where ref() cannot name it (a generic test of another model). -#}
{% macro ingest_increment_events(low, high, staged=none) -%}
    {{ return(adapter.dispatch('ingest_increment_events', 'antenna_elt')(low, high, staged)) }}
{%- endmacro %}

{% macro default__ingest_increment_events(low, high, staged=none) -%}
    {#- PostgreSQL: a BRIN index on raw ingest_seq keeps this to the newest block ranges -#}
    select event_epoch
    from {{ staged or ref('stg_raw__device_usage') }}
    where ingest_seq >= {{ low }} and ingest_seq < {{ high }}
{%- endmacro %}

{% macro duckdb__ingest_increment_events(low, high, staged=none) -%}
    {#- the lake: read the files registered since the model's last build, and only those -#}
    {%- set files = ingest_state_relation('lake_files') -%}
    {#- a registered file that compaction replaced and deleted between two builds is gone -#}
    {%- set result = run_query("select file_path from " ~ files ~ " where ingest_seq >= " ~ low ~ " and ingest_seq < " ~ high ~ " and file_path in (select file from glob('" ~ lake_root() ~ "/device_usage/*/*/*/*/*.parquet')) order by 1") -%}
    {%- set paths = result.columns[0].values() if result else [] -%}
    {%- if paths | length == 0 -%}
    select cast(null as bigint) as event_epoch where false
    {%- else -%}
    select {{ epoch_seconds('event_time') }} as event_epoch
    from read_parquet([{% for path in paths %}'{{ path }}'{% if not loop.last %}, {% endif %}{% endfor %}], union_by_name = true)
    {%- endif -%}
{%- endmacro %}

{% macro bigquery__ingest_increment_events(low, high, staged=none) -%}
    {#- BigQuery: every event of an hour loaded since the model's last build -#}
    select {{ epoch_seconds('staged.event_at') }} as event_epoch
    from {{ staged or ref('stg_raw__device_usage') }} as staged
    where staged.ingest_seq >= {{ low }} and staged.ingest_seq < {{ high }}
{%- endmacro %}


{#- A filter keeping the rows of `column` (epoch seconds) inside the increment's ranges, each
    widened `before` seconds back (context a bucket needs, e.g. the hour before it). With
    `instant=true` the column is a timestamp and the bounds become instants (so that a BRIN
    or min/max index on it prunes). -#}
{% macro ingest_range_filter(increment, column, before=0, instant=false) -%}
    {%- if increment.ranges is none -%}
        1 = 1
    {%- elif increment.ranges | length == 0 -%}
        1 = 0
    {%- else -%}
        (
        {%- for range in increment.ranges %}
            {% if not loop.first %}or {% endif -%}
            {%- if instant -%}
            ({{ column }} >= {{ epoch_to_instant(range[0] - before) }} and {{ column }} < {{ epoch_to_instant(range[1]) }})
            {%- else -%}
            ({{ column }} >= {{ range[0] - before }} and {{ column }} < {{ range[1] }})
            {%- endif -%}
        {%- endfor %}
        )
    {%- endif -%}
{%- endmacro %}


{#- post-hook of every incremental model: its new watermark, in the same transaction as its
    rows. -#}
{% macro record_ingest_watermark() -%}
    {%- if model.config.materialized != 'incremental' -%}{{ return('') }}{%- endif -%}
    {{ return(adapter.dispatch('record_ingest_watermark', 'antenna_elt')()) }}
{%- endmacro %}

{% macro default__record_ingest_watermark() -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    insert into {{ watermarks }} (model_name, low_seq, high_seq, invocation_id, built_at)
    values ('{{ this.identifier }}', 0, {{ ingest_high() }}, '{{ invocation_id }}', {{ dbt.current_timestamp() }})
    on conflict (model_name) do update set
        low_seq = {{ '0' if should_full_refresh() else watermarks.identifier ~ '.high_seq' }},
        {#- builds of a model take turns (begin_ingest_increment) and its watermark never moves
            back: a build that waited for a more advanced one read what that one built, and an
            additive one added nothing below that one's high -#}
        high_seq = {{ 'excluded.high_seq' if should_full_refresh() else 'greatest(' ~ watermarks.identifier ~ '.high_seq, excluded.high_seq)' }},
        invocation_id = excluded.invocation_id,
        built_at = excluded.built_at
{%- endmacro %}

{% macro postgres__record_ingest_watermark() -%}
    {{ default__record_ingest_watermark() }}
    {%- if should_full_refresh() %};
    {{ reset_ingest_tested() }}
    {%- endif %}
{%- endmacro %}

{% macro bigquery__record_ingest_watermark() -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    merge into {{ watermarks }} as recorded
    using (select '{{ this.identifier }}' as model_name, {{ ingest_high() }} as high_seq) as built
    on recorded.model_name = built.model_name
    when matched then update set
        low_seq = {{ '0' if should_full_refresh() else 'recorded.high_seq' }},
        high_seq = built.high_seq,
        invocation_id = '{{ invocation_id }}',
        built_at = current_timestamp()
    when not matched then insert (model_name, low_seq, high_seq, invocation_id, built_at)
        values (built.model_name, 0, built.high_seq, '{{ invocation_id }}', current_timestamp())
{%- endmacro %}


{% macro spark__record_ingest_watermark() -%}
    {#- no upsert on Parquet tables: a row a build (the newest is read). Not atomic with the
        mart's rows: a crash in between leaves the old watermark, and the next build rebuilds
        the same windows again, which gives the same rows. -#}
    insert into {{ ingest_state_relation('ingest_watermarks') }}
    select
        '{{ this.identifier }}',
        {{ 0 if should_full_refresh() else ingest_watermark(this.identifier, 0) }},
        {{ ingest_high() }},
        '{{ invocation_id }}',
        current_timestamp()
{%- endmacro %}


{#- What a data test of `model_name` compares: the events below the high the model was built
    to (so that a build running beside ingestion raises no false alarm), in every bucket
    (var ingest_test_scope 'all', the default), only in the buckets its last build touched
    ('touched': what a schedule's `dbt build` runs, at a cost that follows the increment, not
    the history), or in the buckets touched since the last `dbt test` in the 'untested' scope
    recorded its tests (what `antenna-elt run` runs beside its builds: macros/ingest_tests.sql).
    Returns low and high_seq (numbers: the increment the ranges were computed from), ranges
    (none: everything), and high: what the test's SQL compares below, the model's watermark
    read by the test's own statement where builds can commit while tests run
    (ingest_test_high), so that the mart's rows and its high come from one snapshot. -#}
{% macro ingest_test_increment(model_name, grain, after=0, to_hour_end=false, staged=none) -%}
    {%- set staged = staged or ref('stg_raw__device_usage') -%}
    {%- set scope = var('ingest_test_scope', 'all') -%}
    {%- set span = ingest_untested_span(model_name) if scope == 'untested' else none -%}
    {%- if span is not none -%}
        {%- set low, high = span -%}
    {%- else -%}
        {%- set high = ingest_watermark(model_name) -%}
        {%- if high is none -%}{%- set high = ingest_build_high() -%}{%- endif -%}
        {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
        {%- set low = _ingest_scalar(_ingest_watermark_query(watermarks, model_name, 'low_seq'), 0) if execute and scope == 'touched' else 0 -%}
    {%- endif -%}
    {%- set ranges = none if scope == 'all' or (scope == 'untested' and span is none) else ingest_touched_ranges(grain, low, high, after, to_hour_end, staged=staged) -%}
    {{ return({'low': low, 'high_seq': high, 'high': ingest_test_high(model_name, high), 'ranges': ranges}) }}
{%- endmacro %}


{#- The high a test compares below, as SQL. On PostgreSQL a build can commit between a test's
    compilation and its query (the runner's tests run beside its builds; two schedulers; an
    analyst's build): the model's recorded watermark is read by the test's statement itself,
    whose snapshot also gives the mart's rows, committed in one transaction with that
    watermark (a compiled number let a test compare a mart built to a newer high with the
    events below the older one: a false failure). The buckets a test checks stay those of the
    increment it was compiled for: every one of them holds all events below either high.
    Elsewhere (one writer at a time: the batch layer) the number. -#}
{% macro ingest_test_high(model_name, high) -%}
    {{ return(adapter.dispatch('ingest_test_high', 'antenna_elt')(model_name, high)) }}
{%- endmacro %}

{% macro default__ingest_test_high(model_name, high) -%}
    {{ return(high) }}
{%- endmacro %}

{% macro postgres__ingest_test_high(model_name, high) -%}
    {%- if not execute -%}{{ return(high) }}{%- endif -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    {%- if adapter.get_relation(watermarks.database, watermarks.schema, watermarks.identifier) is none -%}
        {{ return(high) }}
    {%- endif -%}
    {{ return('coalesce((' ~ _ingest_watermark_query(watermarks, model_name, 'high_seq') ~ '), ' ~ high ~ ')') }}
{%- endmacro %}


{#- The end of a data test comparing the CTEs `expected` (from staged events) and `served`
    (the mart) on `keys`: every row whose measures differ or that only one side has. -#}
{% macro served_versus_staged(keys, measures) -%}
compared as (

    select
        {%- for key in keys %}
        coalesce(expected.{{ key }}, served.{{ key }}) as {{ key }},
        {%- endfor %}
        {%- for measure in measures %}
        expected.{{ measure }} as staged_{{ measure }},
        served.{{ measure }} as served_{{ measure }}{{ ',' if not loop.last }}
        {%- endfor %}

    from expected
    full outer join served
        on
            {%- for key in keys %}
            {{ 'and ' if not loop.first }}expected.{{ key }} = served.{{ key }}
            {%- endfor %}

)

select * from compared
where
    {%- for measure in measures %}
    {{ 'or ' if not loop.first }}staged_{{ measure }} is null
    or served_{{ measure }} is null
    or staged_{{ measure }} != served_{{ measure }}
    {%- endfor %}
{%- endmacro %}
