{#- One row per distinct event. Raw keeps one row per Kafka offset, so a producer's re-send
    of the same event appears twice there; it is one event here. Distinct events never share
    all five fields (the simulator guarantees it; real antennas report at most once per
    device, antenna, app and second).
    On PostgreSQL an additive incremental table (macros/ingest_additive.sql): each build adds
    the events first seen in its increment, and further copies of the events it holds; the
    facts add up its new rows. Elsewhere a view, which the facts read bucket by bucket. -#}
{#- config.meta.ingest_bucket: the rows its generic tests check in the 'touched' scope
    (macros/ingest_test_scope.sql) -#}
{%- set as_table = ingest_additive() %}
{{
    config(
        materialized='incremental' if as_table else 'view',
        incremental_strategy='ingest_add_events',
        unique_key=['event_at', 'device_id', 'antenna_id', 'app', 'bytes'],
        indexes=[
            {'columns': ['event_at', 'device_id', 'antenna_id', 'app', 'bytes'], 'unique': true},
            {'columns': ['ingest_seq']},
        ] if as_table else [],
        meta={
            'ingest_bucket': {'column': 'event_at', 'kind': 'instant', 'grain': window_seconds()},
            'ingest_additive': as_table,
        },
    )
}}

{%- if ingest_adds_increment() %}
    {%- set received = 'ingest_seq >= ' ~ ingest_additive_low() ~ ' and ingest_seq < ' ~ ingest_high() %}
{%- elif as_table %}
    {#- a table holds what staging held below the build's high: a row above it is the next
        increment's #}
    {%- set received = 'ingest_seq < ' ~ ingest_high() %}
{%- else %}
    {%- set received = '1 = 1' %}
{%- endif %}

with

events as (

    select * from {{ ref('stg_raw__device_usage') }}
    where {{ received }}

),

deduplicated as (

    select
        event_epoch,
        event_at,
        device_id,
        antenna_id,
        app,
        bytes,
        count(*) as copies_received,
        min(ingested_at) as first_ingested_at,
        min(ingest_seq) as ingest_seq

    from events
    group by 1, 2, 3, 4, 5, 6

),

{# an event already held keeps its first copy's ingest_seq: it is not new to the facts #}
held as (

    {{ ingest_received_with_held('deduplicated', ['event_at', 'device_id', 'antenna_id', 'app', 'bytes']) }}

),

bucketed as (

    select
        {{ bucket_epoch('event_epoch', window_seconds()) }} as window_epoch,
        {{ bucket_epoch('event_epoch', 3600) }} as hour_epoch,
        held.*

    from held

)

select * from bucketed
