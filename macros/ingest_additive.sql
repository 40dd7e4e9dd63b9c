{#- Additive increments (PostgreSQL, the speed layer that `antenna-elt run` builds every cycle).

    The incremental models of macros/ingest_increments.sql rebuild every bucket an increment
    touches, whole: exact under any arrival order, but a cycle then costs what the current
    window and hour hold (up to 3M and 36M events at 10k events/s), not what arrived since
    the last cycle. On PostgreSQL the models whose totals are sums (config.meta
    ingest_additive: int_device_usage__deduplicated, fct_usage_windowed, fct_usage_hourly)
    instead add each increment to what they hold:
    - int_device_usage__deduplicated is a table with a unique index on the event's five
      fields; an increment's staged rows (low <= ingest_seq < high) are grouped, and an event
      it does not hold yet is inserted with the ingest_seq of its first copy; a further copy of
      an event it holds only adds to copies_received (its ingest_seq stays). So its rows with
      low <= ingest_seq < high are exactly the distinct events first seen in that increment.
    - the facts aggregate those new distinct events and add them to their stored totals.
    The models below them rebuild the buckets they touch from these facts (small tables).

    An addition must happen exactly once, whatever runs beside it: two builds at once (two
    runners, a scheduler and an analyst), a build killed at any point. So an additive model's
    `low` is read in its own transaction after taking a transaction-level advisory lock of
    the model (pre-hook begin_ingest_increment), not at compile time: a second build waits
    for the first to commit, then adds only what the first did not, and its watermark never
    moves back (record_ingest_watermark keeps the greater high). A killed build's transaction
    rolls back with its rows. Other targets (DuckDB, BigQuery, Spark: the hourly batch layer)
    rebuild touched buckets as before. -#}


{#- Whether the current target adds increments to the additive models. -#}
{% macro ingest_additive() -%}
    {{ return(adapter.dispatch('ingest_additive', 'antenna_elt')()) }}
{%- endmacro %}

{% macro default__ingest_additive() -%}
    {{ return(false) }}
{%- endmacro %}

{% macro postgres__ingest_additive() -%}
    {{ return(true) }}
{%- endmacro %}


{#- Whether the current model adds this build's increment (its table exists, no full refresh). -#}
{% macro ingest_adds_increment() -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- set declared = (model.config.get('meta') or {}).get('ingest_additive', false) -%}
    {{ return(declared and ingest_additive() and model.config.materialized == 'incremental' and is_incremental()) }}
{%- endmacro %}


{#- The setting the pre-hook leaves the model's low in, for this transaction only. -#}
{% macro _additive_low_setting() -%}antenna_elt.additive_low_seq{%- endmacro %}


{#- pre-hook of every model (inside its transaction; empty but for incremental models built
    incrementally on PostgreSQL): wait for any other build of this model to commit (a
    transaction-level advisory lock of the model), so that two builds at once (two runners, a
    scheduler and an analyst) take turns instead of both deleting the old rows of a bucket and
    both inserting its new ones. An additive model then reads the high it was built to as this
    build's low; one without a recorded watermark has no known low: the cast in
    ingest_additive_low() fails with a message naming the fix, rather than adding everything
    again. -#}
{% macro begin_ingest_increment() -%}
    {%- if not execute or model.config.materialized != 'incremental' or not is_incremental() -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(adapter.dispatch('begin_ingest_increment', 'antenna_elt')()) }}
{%- endmacro %}

{#- DuckDB takes one writing process at a time; BigQuery's merges and Spark's overwrites of a
    bucket replace it whole: nothing to wait for. -#}
{% macro default__begin_ingest_increment() -%}
    {{ return('') }}
{%- endmacro %}

{% macro postgres__begin_ingest_increment() -%}
    {%- set watermarks = ingest_state_relation('ingest_watermarks') -%}
    {#- two statements: a statement sees the rows committed when it started, so the low is
        read by the one after the lock (read in the same statement, it was the low from before
        the other build committed, and that build's increment was added twice) -#}
    select pg_advisory_xact_lock(hashtext('antenna_elt incremental build {{ this }}'))
    {%- if ingest_adds_increment() %};
    select
        set_config(
            '{{ _additive_low_setting() }}',
            coalesce(
                (select cast(high_seq as text) from {{ watermarks }} where model_name = '{{ this.identifier }}'),
                '{{ this.identifier }} has no recorded watermark: build it once with --full-refresh'
            ),
            true
        )
    {%- endif %}
{%- endmacro %}


{#- SQL: the low of an additive model's increment, as the pre-hook read it. -#}
{% macro ingest_additive_low() -%}
    cast(current_setting('{{ _additive_low_setting() }}') as bigint)
{%- endmacro %}


{#- A select of the CTE `increment` (keys and values of this build's new events) with each of
    `combined` ([column, expression] pairs, the expression reading the increment's value and
    `held`, the current model's row of the same keys), when it adds increments; otherwise
    the CTE as it is. -#}
{% macro ingest_combined_with_held(increment, keys, combined) -%}
    {%- if not ingest_adds_increment() -%}
    select * from {{ increment }}
    {%- else -%}
    select
        {%- for key in keys %}
        {{ increment }}.{{ key }},
        {%- endfor %}
        {%- for column, expression in combined %}
        {{ expression }} as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}

    from {{ increment }}
    left join {{ this }} as held
        on
            {%- for key in keys %}
            {{ 'and ' if not loop.first }}held.{{ key }} = {{ increment }}.{{ key }}
            {%- endfor %}
    {%- endif %}
{%- endmacro %}


{#- The increment's summed measures with the totals the current model holds added. -#}
{% macro ingest_add_to_held(increment, keys, measures) -%}
    {%- set combined = [] -%}
    {%- for measure in measures -%}
        {%- do combined.append([measure, increment ~ '.' ~ measure ~ ' + coalesce(held.' ~ measure ~ ', 0)']) -%}
    {%- endfor -%}
    {{ return(ingest_combined_with_held(increment, keys, combined)) }}
{%- endmacro %}


{#- The increment's latest values, each the later of it and the one the current model holds. -#}
{% macro ingest_later_of_held(increment, keys, latest) -%}
    {%- set combined = [] -%}
    {%- for column in latest -%}
        {%- set new = increment ~ '.' ~ column -%}
        {%- do combined.append([column, 'greatest(' ~ new ~ ', coalesce(held.' ~ column ~ ', ' ~ new ~ '))']) -%}
    {%- endfor -%}
    {{ return(ingest_combined_with_held(increment, keys, combined)) }}
{%- endmacro %}


{#- A select of the CTE `received` (an increment's staged rows, one per event: keys,
    copies_received, first_ingested_at, ingest_seq) as the de-duplicated table will hold
    them: an event it holds already keeps its first copy's ingest_seq and adds the copies;
    when not adding increments, the CTE as it is. -#}
{% macro ingest_received_with_held(received, keys) -%}
    {%- if not ingest_adds_increment() -%}
    select * from {{ received }}
    {%- else -%}
    select
        {{ received }}.event_epoch,
        {%- for key in keys %}
        {{ received }}.{{ key }},
        {%- endfor %}
        {{ received }}.copies_received + coalesce(held.copies_received, 0) as copies_received,
        coalesce(held.first_ingested_at, {{ received }}.first_ingested_at) as first_ingested_at,
        coalesce(held.ingest_seq, {{ received }}.ingest_seq) as ingest_seq

    from {{ received }}
    left join {{ this }} as held
        on
            {%- for key in keys %}
            {{ 'and ' if not loop.first }}held.{{ key }} = {{ received }}.{{ key }}
            {%- endfor %}
    {%- endif %}
{%- endmacro %}


{#- The incremental strategy of int_device_usage__deduplicated on PostgreSQL. The build's rows
    (dbt's temp relation: ingest_received_with_held) are the increment's events, each either
    new (its ingest_seq is the increment's: inserted) or one the table holds (its held
    ingest_seq, below the low: its copies_received, already summed, written back). dbt's
    delete+insert deleted and inserted every row, probing the unique index twice for each,
    while nearly all are new. -#}
{% macro get_incremental_ingest_add_events_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set received = arg_dict['temp_relation'] -%}
    {%- set columns = arg_dict['dest_columns'] | map(attribute='quoted') | join(', ') -%}
    update {{ target }} as held
    set copies_received = received.copies_received
    from {{ received }} as received
    where
        received.ingest_seq < {{ ingest_additive_low() }}
        {%- for key in arg_dict['unique_key'] %}
        and held.{{ key }} = received.{{ key }}
        {%- endfor %};

    insert into {{ target }} ({{ columns }})
    select {{ columns }}
    from {{ received }}
    where ingest_seq >= {{ ingest_additive_low() }}
{%- endmacro %}


{#- The filter of a fact's `events` (rows of int_device_usage__deduplicated): on PostgreSQL the
    new distinct events of this build's increment (added to the stored totals); elsewhere every
    event below the high in the buckets of `grain` seconds the increment touched (rebuilt
    whole). -#}
{% macro ingest_fact_events_filter(grain) -%}
    {%- if ingest_adds_increment() -%}
        {{ return('ingest_seq >= ' ~ ingest_additive_low() ~ ' and ingest_seq < ' ~ ingest_high()) }}
    {%- endif -%}
    {%- set increment = ingest_increment(grain=grain) -%}
    {{ return('ingest_seq < ' ~ increment.high ~ ' and ' ~ ingest_range_filter(increment, 'event_at', instant=true)) }}
{%- endmacro %}
