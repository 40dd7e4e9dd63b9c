{#- Generic data tests (not_null, unique, unique_combination_of_columns, non_negative, ...)
    in the 'touched' test scope (var ingest_test_scope, what a schedule's builds run: the
    speed DAG) check only the rows in the buckets the last build touched, as the singular
    tests in tests/ do, so that their cost follows the increment and not the history; in the
    'untested' scope (`antenna-elt run`'s `dbt test` beside its builds: macros/ingest_tests.sql)
    the buckets touched since the last such `dbt test`.

    dbt wraps the model of every generic test in get_where_subquery (where the `where` config
    goes); this override adds the scope for models that declare their bucket in
    config.meta.ingest_bucket:
    - column: the bucket column (epoch seconds; `kind: instant` for a timestamp with time
      zone, `kind: timestamp` for a UTC timestamp without one);
    - grain: the bucket size in seconds; `after` and `to_hour_end` as the model's
      ingest_increment widens what it rebuilds;
    - seq_column (views over staged rows): rows with an ingest_seq in the range are in scope
      too, whatever their time (a row with no event time at all among them).
    An incremental model's scope is what its last build touched; a view's is every row from
    the lowest low of the incremental models' last builds on (ingest_views_test_span).
    A duplicate always shares its bucket with the row it repeats (the same event time: an
    offset is one message), so uniqueness is still checked across old and new rows.
    With the default scope 'all', or for a model without ingest_bucket, a test reads
    everything, as before. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {#- parsing renders generic tests with only the macros they call directly: the scope is
        a matter of execution -#}
    {%- set scope = ingest_test_scope_filter() if execute else '' -%}
    {%- if scope -%}{%- do conditions.append(scope) -%}{%- endif -%}
    {%- if conditions | length == 0 -%}{{ return(relation) }}{%- endif -%}
    {%- set filtered -%}
        (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
    {%- endset -%}
    {{ return(filtered) }}
{%- endmacro %}


{#- The touched-scope condition for the model the current generic test is attached to, or
    '' (everything). -#}
{% macro ingest_test_scope_filter() -%}
    {%- if var('ingest_test_scope', 'all') == 'all' or not execute -%}{{ return('') }}{%- endif -%}
    {%- set attached = model.get('attached_node') -%}
    {%- set node = (graph.get('nodes') or {}).get(attached) if attached else none -%}
    {%- if node is none -%}{{ return('') }}{%- endif -%}
    {%- set bucket = (node.config.get('meta') or {}).get('ingest_bucket') -%}
    {%- if not bucket -%}{{ return('') }}{%- endif -%}
    {%- set grain = bucket['grain'] | int -%}
    {%- set after = bucket.get('after', 0) | int -%}
    {%- set to_hour_end = bucket.get('to_hour_end', false) -%}
    {#- a generic test depends on its own model only: ref() cannot name the staged events -#}
    {%- set staged = graph.nodes['model.' ~ project_name ~ '.stg_raw__device_usage'].relation_name -%}
    {%- if node.config.materialized == 'incremental' -%}
        {%- set increment = ingest_test_increment(node.name, grain, after, to_hour_end, staged=staged) -%}
    {%- else -%}
        {%- set span = ingest_views_test_span() -%}
        {%- set increment = {'low': span[0], 'high': span[1], 'ranges': ingest_touched_ranges(grain, span[0], span[1], after, to_hour_end, staged=staged)} -%}
    {%- endif -%}
    {%- set condition = ingest_bucket_filter(increment.ranges, bucket['column'], bucket.get('kind', 'epoch')) -%}
    {%- if bucket.get('seq_column') -%}
        {%- set condition = '(' ~ condition ~ ' or (' ~ bucket['seq_column'] ~ ' >= ' ~ increment.low ~ ' and ' ~ bucket['seq_column'] ~ ' < ' ~ increment.high ~ '))' -%}
    {%- endif -%}
    {{ return(condition) }}
{%- endmacro %}


{#- What the generic tests of a view over staged events check in the 'touched' scope: from the
    lowest low of the incremental models' last builds to this invocation's high. Inside
    `dbt build` a view's tests run before the marts are built, so this spans the previous
    build's increment and the one about to be built; in a `dbt test` after `dbt run`, the
    run's increment and what arrived since; in the 'untested' scope, from the lowest low of
    the invocation's spans. Either way no ingested row goes unchecked. -#}
{% macro ingest_views_test_span() -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    {%- set high = ingest_build_high() -%}
    {%- if var('ingest_test_scope', 'all') == 'untested' -%}
        {#- from the lowest low of this `dbt test`'s spans (macros/ingest_tests.sql) -#}
        {%- set _ = ingest_untested_span('') -%}
        {%- set lows = ingest_invocation_cache('untested_spans')['spans'].values() | map(attribute=0) | list -%}
        {{ return([lows | min if lows else 0, high]) }}
    {%- endif -%}
    {%- if adapter.get_relation(watermarks.database, watermarks.schema, watermarks.identifier) is none -%}
        {{ return([0, high]) }}
    {%- endif -%}
    {%- set latest -%}
        select
            low_seq,
            row_number() over (partition by model_name order by built_at desc, high_seq desc) as newest
        from {{ watermarks }}
    {%- endset -%}
    {%- set low = _ingest_scalar('select min(low_seq) from (' ~ latest ~ ') as latest where newest = 1', 0) -%}
    {{ return([low, high]) }}
{%- endmacro %}


{#- `column` within the [start, end) epoch-second `ranges`; `kind` says what the column holds:
    epoch seconds, an instant (timestamp with time zone) or a UTC timestamp. -#}
{% macro ingest_bucket_filter(ranges, column, kind='epoch') -%}
    {%- if ranges is none -%}{{ return('1 = 1') }}{%- endif -%}
    {%- if ranges | length == 0 -%}{{ return('1 = 0') }}{%- endif -%}
    {%- set column = adapter.quote(column.strip('"')) if column.startswith('"') else column -%}
    {%- set parts = [] -%}
    {%- for range in ranges -%}
        {%- if kind == 'instant' -%}
            {%- do parts.append('(' ~ column ~ ' >= ' ~ epoch_to_instant(range[0]) ~ ' and ' ~ column ~ ' < ' ~ epoch_to_instant(range[1]) ~ ')') -%}
        {%- elif kind == 'timestamp' -%}
            {%- do parts.append('(' ~ column ~ ' >= ' ~ epoch_to_timestamp(range[0]) ~ ' and ' ~ column ~ ' < ' ~ epoch_to_timestamp(range[1]) ~ ')') -%}
        {%- else -%}
            {%- do parts.append('(' ~ column ~ ' >= ' ~ range[0] ~ ' and ' ~ column ~ ' < ' ~ range[1] ~ ')') -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('(' ~ parts | join(' or ') ~ ')') }}
{%- endmacro %}
