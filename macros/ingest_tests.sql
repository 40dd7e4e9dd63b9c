{#- The 'untested' test scope (var ingest_test_scope: 'untested', PostgreSQL, `dbt test` only):
    what `antenna-elt run` runs beside its builds. Its builds publish the marts without
    waiting for their data tests (`dbt build` without tests: the latency from an event to a
    mart is the build's, not the build's and the tests'); a `dbt test` beside them checks, for
    every incremental model, each bucket touched since the last such `dbt test` recorded its
    tests, whatever number of builds ran in between: no build goes unchecked.

    - on-run-start (start_ingest_tests) records this invocation's span of each model in
      ingest_test_spans: low, the high its last recorded tests reached (ingest_tested; the
      model's last build's low when it has none, 0 after a full refresh), and high, the high
      the model is built to now. Every test of the invocation reads its model's span
      (ingest_test_increment), so all of them check the same buckets.
    - on-run-end (finish_ingest_tests) records each high in ingest_tested (it never moves back:
      two runners may test at once) and forgets the spans. A failing test was reported once,
      as a build's is. An interrupted or killed `dbt test` runs no on-run-end: its spans are
      checked again by the next one.
    The buckets beyond a span's high (built while the tests ran) are the next span's. -#}
{% macro start_ingest_tests() -%}
    {%- if var('ingest_test_scope', 'all') not in ('all', 'touched', 'untested') -%}
        {{ exceptions.raise_compiler_error("ingest_test_scope is '" ~ var('ingest_test_scope') ~ "': use all (the default), touched or untested") }}
    {%- endif -%}
    {%- if var('ingest_test_scope', 'all') != 'untested' or not execute -%}{{ return('') }}{%- endif -%}
    {%- if target.type != 'postgres' -%}
        {{ exceptions.raise_compiler_error("ingest_test_scope 'untested' is for the PostgreSQL target (the speed layer), not " ~ target.type ~ ": use 'touched' or 'all'") }}
    {%- endif -%}
    {%- if flags.WHICH != 'test' -%}
        {{ exceptions.raise_compiler_error("ingest_test_scope 'untested' is for `dbt test` (its tests check what builds before it touched), not `dbt " ~ flags.WHICH ~ "`: use 'touched'") }}
    {%- endif -%}
    {%- set spans = ingest_state_relation('ingest_test_spans') -%}
    {%- set tested = ingest_state_relation('ingest_tested') -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    {%- set now = ingest_build_started_epoch() -%}
    create table if not exists {{ spans }} (
        invocation_id varchar(64) not null,
        model_name varchar(256) not null,
        low_seq bigint not null,
        high_seq bigint not null,
        started_epoch bigint not null,
        primary key (invocation_id, model_name)
    );
    {{ ingest_tested_ddl() }};
    {#- spans of a `dbt test` killed long ago -#}
    delete from {{ spans }} where started_epoch < {{ now }} - 86400;
    insert into {{ spans }} (invocation_id, model_name, low_seq, high_seq, started_epoch)
    select
        '{{ invocation_id }}',
        built.model_name,
        case
            when built.low_seq = 0 then 0
            else least(coalesce(tested.tested_seq, built.low_seq), built.high_seq)
        end,
        built.high_seq,
        {{ now }}
    from {{ watermarks }} as built
    left join {{ tested }} as tested
        on built.model_name = tested.model_name
{%- endmacro %}


{% macro finish_ingest_tests() -%}
    {%- if var('ingest_test_scope', 'all') != 'untested' or not execute or flags.WHICH != 'test' -%}
        {{ return('') }}
    {%- endif -%}
    {%- set spans = ingest_state_relation('ingest_test_spans') -%}
    {%- set tested = ingest_state_relation('ingest_tested') -%}
    insert into {{ tested }} as tested (model_name, tested_seq, invocation_id, tested_at)
    select model_name, high_seq, invocation_id, {{ dbt.current_timestamp() }}
    from {{ spans }}
    where invocation_id = '{{ invocation_id }}'
    on conflict (model_name) do update set
        tested_seq = greatest(tested.tested_seq, excluded.tested_seq),
        invocation_id = excluded.invocation_id,
        tested_at = excluded.tested_at;
    delete from {{ spans }} where invocation_id = '{{ invocation_id }}'
{%- endmacro %}


{#- This invocation's span [low, high) of `model_name` (recorded by start_ingest_tests), or
    none when the model had no watermark when the tests started (never built: every row). -#}
{% macro ingest_untested_span(model_name) -%}
    {%- if not execute -%}{{ return(none) }}{%- endif -%}
    {%- set cache = ingest_invocation_cache('untested_spans') -%}
    {%- if 'spans' not in cache -%}
        {%- set found = {} -%}
        {%- set result = run_query("select model_name, low_seq, high_seq from " ~ ingest_state_relation('ingest_test_spans') ~ " where invocation_id = '" ~ invocation_id ~ "'") -%}
        {%- for row in result.rows -%}
            {%- do found.update({row[0]: [row[1] | int, row[2] | int]}) -%}
        {%- endfor -%}
        {%- do cache.update({'spans': found}) -%}
    {%- endif -%}
    {{ return(cache['spans'].get(model_name)) }}
{%- endmacro %}


{#- The table of the highs each model's 'untested' tests reached. -#}
{% macro ingest_tested_ddl() -%}
    create table if not exists {{ ingest_state_relation('ingest_tested') }} (
        model_name varchar(256) primary key,
        tested_seq bigint not null,
        invocation_id varchar(64) not null,
        tested_at timestamp not null
    )
{%- endmacro %}


{#- Part of a full refresh's post-hook on PostgreSQL (record_ingest_watermark): the model's
    buckets were all rebuilt, so the next 'untested' test checks all of them, even after
    incremental builds in between (before, its span started at the high the last tests
    reached, and a bucket only the full refresh rebuilt was never checked again). A `dbt
    test` that started before the refresh and ends after it records its own high over this
    (greatest): that one window is not covered. -#}
{% macro reset_ingest_tested() -%}
    {%- set tested = ingest_state_relation('ingest_tested') -%}
    {{ ingest_tested_ddl() }};
    insert into {{ tested }} as tested (model_name, tested_seq, invocation_id, tested_at)
    values ('{{ this.identifier }}', 0, '{{ invocation_id }}', {{ dbt.current_timestamp() }})
    on conflict (model_name) do update set
        tested_seq = 0,
        invocation_id = excluded.invocation_id,
        tested_at = excluded.tested_at
{%- endmacro %}
